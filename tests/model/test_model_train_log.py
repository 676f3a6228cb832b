"""Training logs after a killed attempt: only the finished run's curves remain."""

from __future__ import annotations

from textbooklm.model.train_log import TrainLog, read_metrics


def test_a_fresh_start_drops_the_killed_attempts_events_and_rows(tmp_path):
    tb = tmp_path / "tensorboard"
    tb.mkdir()
    (tb / "events.out.tfevents.1.killed").write_bytes(b"old attempt")
    (tmp_path / "metrics.csv").write_text("step,tokens,loss,val_loss,lr,grad_norm,tokens_per_s,mfu\n"
                                          "10,100,9.0,,0.001,1.0,5.0,\n")
    log = TrainLog(tmp_path, start_step=0, max_steps=5, enabled=True)
    log.write(1, 10, 5.0, None, 1e-3, 0.5, 100.0, None)
    log.close()
    assert not (tb / "events.out.tfevents.1.killed").exists()
    assert len(list(tb.glob("events.out.tfevents.*"))) == 1
    assert [r["step"] for r in read_metrics(tmp_path)] == ["1"]


def test_a_resume_keeps_the_events_up_to_its_checkpoint(tmp_path):
    log = TrainLog(tmp_path, start_step=0, max_steps=5, enabled=True)
    for step in (1, 2, 3):
        log.write(step, step * 10, 5.0, None, 1e-3, 0.5, 100.0, None)
    log.close()
    resumed = TrainLog(tmp_path, start_step=2, max_steps=5, enabled=True)
    resumed.close()
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) >= 1
    assert [r["step"] for r in read_metrics(tmp_path)] == ["1", "2"]
