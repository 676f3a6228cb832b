"""Config validation, the cost estimate (phi-1 scale at 2023 prices), and the teacher/cost commands."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from textbooklm.cli import app
from textbooklm.config import ConfigError
from textbooklm.config_base import read_toml
from textbooklm.teacher import Request, TeacherConfig, request_key
from textbooklm.teacher.cost import estimate, parse_cost_plan, parse_teachers

PHI1_2023 = """
[teachers.gpt4]
backend = "openai"
model = "gpt-4-0613"

[teachers.gpt35]
backend = "openai"
model = "gpt-3.5-turbo-0613"

# ~100M tokens of code judged by GPT-4 (100k files x ~1000 tokens, a short grade back)
[cost.judge]
teacher = "gpt4"
requests = 100_000
input_tokens_per_request = 1000
output_tokens_per_request = 5

# ~1.3B tokens of textbooks + exercises written by GPT-3.5 (1.3M documents x ~1000 tokens)
[cost.textbooks]
teacher = "gpt35"
requests = 1_300_000
input_tokens_per_request = 150
output_tokens_per_request = 1000
"""


def test_phi1_scale_costs_what_the_paper_paid(tmp_path):
    path = tmp_path / "phi1.toml"
    path.write_text(PHI1_2023)
    raw = read_toml(path)
    teachers = parse_teachers(raw, str(path))
    rows = {r.stage: r for r in estimate(teachers, parse_cost_plan(raw, str(path), teachers))}
    assert rows["judge"].tokens_in == 100e6
    assert rows["judge"].usd == pytest.approx(3000 + 30, rel=1e-9)  # $30/1M in, $60/1M out
    assert rows["textbooks"].tokens_out == 1.3e9
    assert rows["textbooks"].usd == pytest.approx(1.5 * 195 + 2.0 * 1300)
    assert 2500 <= rows["textbooks"].usd <= 3000


def test_config_errors_name_file_and_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[teachers.gpt4]\nbackend = "openai"\nmodel = "gpt-4"\nrpmm = 5\n')
    with pytest.raises(ConfigError, match=r"bad.toml: teachers.gpt4.rpmm: unknown key"):
        parse_teachers(read_toml(path), str(path))
    path.write_text('[teachers.x]\nbackend = "openai"\nmodel = "my-model"\nbudget_usd = 5\n')
    with pytest.raises(ConfigError, match="budget_usd needs a price"):
        parse_teachers(read_toml(path), str(path))
    path.write_text(PHI1_2023.replace('teacher = "gpt35"', 'teacher = "gpt5"'))
    raw = read_toml(path)
    with pytest.raises(ConfigError, match=r"cost.textbooks.teacher: no teacher named 'gpt5'"):
        parse_cost_plan(raw, str(path), parse_teachers(raw, str(path)))


def test_prices_presets_and_overrides():
    assert TeacherConfig(backend="openai", model="gpt-4o").resolved_price().usd_per_1m_input == 2.5
    assert TeacherConfig(backend="openai", model="deploy-1", price_preset="gpt-4o-mini").resolved_price() \
        .usd_per_1m_output == 0.6
    cfg = TeacherConfig(backend="openai", model="gpt-4o", price={"usd_per_1m_input": 1, "usd_per_1m_output": 2})
    assert cfg.resolved_price().usd_per_1m_output == 2
    assert TeacherConfig(backend="openai", model="unknown").resolved_price() is None
    assert TeacherConfig(backend="local", model="smollm2").resolved_price().cost(1e6, 1e6) == 0


def test_request_key_covers_messages_params_and_seed():
    base = Request(messages=[{"role": "user", "content": "hi"}], max_tokens=8, seed=1)
    same = Request(messages=[{"role": "user", "content": "hi"}], max_tokens=8, seed=1)
    assert request_key("openai", "m", base) == request_key("openai", "m", same)
    variants = [
        Request(messages=[{"role": "user", "content": "hi!"}], max_tokens=8, seed=1),
        Request(messages=[{"role": "user", "content": "hi"}], max_tokens=9, seed=1),
        Request(messages=[{"role": "user", "content": "hi"}], max_tokens=8, seed=2),
        Request(messages=[{"role": "user", "content": "hi"}], max_tokens=8, seed=1, temperature=0.7),
    ]
    keys = {request_key("openai", "m", v) for v in variants}
    assert len(keys | {request_key("openai", "m", base)}) == 5
    assert request_key("local", "m", base) != request_key("openai", "m", base)
    assert request_key("openai", "m2", base) != request_key("openai", "m", base)
    with pytest.raises(ValueError, match="message 0"):
        Request(messages=[{"role": "user"}])


def test_cost_command_prints_a_table_per_stage(tmp_path):
    path = tmp_path / "phi1.toml"
    path.write_text(PHI1_2023 + "\n[corpus]\nsomething = 1\n")  # other sections are not its business
    res = CliRunner().invoke(app, ["cost", str(path)], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "judge" in res.output and "textbooks" in res.output
    assert "$3,030.00" in res.output and "$2,892.50" in res.output and "$5,922.50" in res.output


def test_teacher_check_command(server, make_cfg, tmp_path, api_key):
    cfg = make_cfg()
    path = tmp_path / "run.toml"
    path.write_text(
        f'[teachers.echo]\nbackend = "openai"\nmodel = "echo-1"\nbase_url = "{cfg.base_url}"\n'
        f'api_key_env = "{cfg.api_key_env}"\n'
    )
    server.state.top = {"cat": 0.9, "dog": 0.05, "Cat": 0.03}  # the few-shot probe's labels
    res = CliRunner().invoke(app, ["teacher", "check", str(path)], terminal_width=250)
    assert res.exit_code == 0, res.output
    assert "echo-1" in res.output and "yes: P(cat) 0.95, labels cover 1.00" in res.output and " s" in res.output
    assert api_key not in res.output
    assert len(server.hits) == 2  # one tiny request + one logprobs probe
    # the echo server has no /v1/models and no /tokenize: said, not hidden
    assert "warning: model name not verified" in res.output and "estimated" in res.output

    server.inject("no_logprobs", count=1, match="cat")
    res = CliRunner().invoke(app, ["teacher", "check", str(path)], terminal_width=250)
    assert res.exit_code == 0 and "no (no_choice_logprobs" in res.output

    server.state.top = {"I": 0.9, "cat": 0.05, "dog": 0.05}  # labels far down the list: a weak probe
    res = CliRunner().invoke(app, ["teacher", "check", str(path)], terminal_width=250)
    assert res.exit_code == 0 and "weak: P(cat) 0.50, labels cover 0.10" in res.output

    path.write_text(path.read_text() + "max_retries = 0\n")
    server.inject("500", count=99)  # a server failing: its message, exit 1
    res = CliRunner().invoke(app, ["teacher", "check", str(path)], terminal_width=250)
    assert res.exit_code == 1 and "http_500: internal error" in res.output
    server.state.faults.clear()

    res = CliRunner().invoke(app, ["teacher", "check", str(path), "--teacher", "nope"])
    assert res.exit_code == 2


def test_teacher_check_model_name_against_the_server_list(tmp_path, api_key):
    """A server that lists another model: answering anyway is a warning (it ignores the name)."""
    import json

    from fakes.echo_server import EchoServer, _Handler

    class ListsOneModel(_Handler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, json.dumps({"object": "list", "data": [
                    {"id": "served-model", "object": "model", "max_model_len": 4096}]}).encode())
            else:
                self._send(404, b'{"error": {"message": "not found"}}')

    with EchoServer() as srv:
        srv._httpd.RequestHandlerClass = ListsOneModel
        srv.state.top = {"cat": 0.9, "dog": 0.1}
        path = tmp_path / "t.toml"
        for model in ("served-model", "some-other-name"):
            path.write_text(f'[teachers.x]\nbackend = "openai"\nmodel = "{model}"\nbase_url = "{srv.base_url}"\n'
                            'api_key_env = "TEXTBOOKLM_TEST_TEACHER_KEY"\n')
            res = CliRunner().invoke(app, ["teacher", "check", str(path)], terminal_width=250)
            assert res.exit_code == 0, res.output
            if model == "served-model":
                assert "model name     served" in res.output and "context        4096 tokens" in res.output
                assert "warning" not in res.output
            else:
                assert "not listed (server has: served-model); it answered anyway" in res.output
                assert "warning: the server ignores the model name" in res.output
