"""Fuzz harnesses (atheris via run.py for long local runs; the same ``one_input``
functions run under hypothesis in CI: tests/adversarial/test_adv_fuzz.py)."""
