"""Code blocks out of messy model markdown."""

from __future__ import annotations

from textbooklm.codeblocks import extract_blocks, parsable_prefix, python_blocks, unfenced_code

MESSY = """# Lists

Some prose with `inline code` that is not a block.

```python
values = [1, 2]
print(values)
```

1. Inside a list item, indented:
   ```py
   def double(x):
       return 2 * x
   ```

~~~
>>> double(3)
6
>>> print("hi")
hi
~~~

```bash
pip install numpy
```

```
Output:
[1, 2]
```

```Python3
name = input("Your name? ")
```

```{python}
# no-run: needs a network
import urllib.request
```

````python
s = '''```'''
print(s)
````

```
def broken(:
    pass
```

```python
for i in range(3):
    print(i
"""


def test_every_block_found_typed_and_parsed():
    blocks = extract_blocks(MESSY)
    got = [(b.language, b.is_python, b.parses, b.runnable, b.closed) for b in blocks]
    assert got == [
        ("python", True, True, True, True),
        ("py", True, True, True, True),  # list-item indentation removed
        ("", True, True, True, True),  # '>>>' session
        ("bash", False, False, False, True),
        ("", False, False, False, True),  # program output
        ("python3", True, True, False, True),  # reads stdin
        ("python", True, True, False, True),  # marked no-run
        ("python", True, True, True, True),  # four-backtick fence around a triple backtick
        ("", True, False, False, True),  # untagged broken Python is still Python
        ("python", True, False, False, False),  # cut off at max_tokens
    ]
    assert blocks[1].code == "def double(x):\n    return 2 * x\n"
    assert blocks[2].code == 'double(3)\nprint("hi")\n'
    assert blocks[5].not_run_reason.startswith("reads stdin")
    assert "SyntaxError" in blocks[8].syntax_error and "line 1" in blocks[8].syntax_error
    assert blocks[9].not_run_reason == "does not parse"
    assert [b.line for b in blocks][:2] == [5, 11]
    assert len(python_blocks(MESSY)) == 8


def test_no_blocks_and_empty_blocks():
    assert extract_blocks("just prose\nno code") == []
    (empty,) = extract_blocks("```python\n```\n")
    assert empty.code == "" and not empty.runnable


def test_unfenced_code_drops_prose_around_it():
    reply = "Sure, here it is:\ndef f(x):\n    return x + 1\n\nassert f(1) == 2\nThis function adds one."
    assert unfenced_code(reply) == "def f(x):\n    return x + 1\n\nassert f(1) == 2\n"
    assert unfenced_code("no code at all") == ""


def test_parsable_prefix_keeps_whole_top_level_statements():
    cut = "def f(x):\n    return x\n\nassert f(1) == 1\nassert f([1,\n"
    assert parsable_prefix(cut) == "def f(x):\n    return x\n\nassert f(1) == 1\n"
    assert parsable_prefix("def f(x):\n    return (x +\n") == ""
