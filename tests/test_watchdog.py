"""Liveness: a stuck server fails /healthz and ends itself so that it is restarted."""

import threading

from rag.api import create_app
from rag.watchdog import EXIT_STATUS, Heartbeat, Watchdog
from tests.conftest import serving


def test_nothing_stuck_is_no_problem():
    assert Watchdog({"model": lambda: 1.0}, limit=10).problem() == ""


def test_an_age_over_the_limit_names_what_is_stuck():
    problem = Watchdog({"model": lambda: 1.0, "loop": lambda: 42.0}, limit=10).problem()
    assert problem.startswith("loop has not finished for 42 s")


def test_a_heartbeat_ages_until_ticked():
    beat = Heartbeat()
    assert beat.age() < 1
    beat._last -= 30
    assert beat.age() >= 30
    beat.tick()
    assert beat.age() < 1


def test_the_process_exits_once_a_problem_outlasts_two_checks():
    exited = threading.Event()
    codes = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        exited.set()

    stuck = Watchdog({"model": lambda: 99.0}, limit=10, interval=0.01, exit=fake_exit)
    stuck.start()
    assert exited.wait(5) and codes == [EXIT_STATUS]

    calm = threading.Event()
    fine = Watchdog({"model": lambda: 0.0}, limit=10, interval=0.01, exit=lambda c: calm.set())
    fine.start()
    assert not calm.wait(0.2)
    fine.stop()


def test_healthz_is_503_while_stuck(assistant):
    problem = ""
    app = create_app(lambda: assistant, stuck=lambda: problem)
    with serving(app) as api:
        assert api.get("/healthz").status_code == 200
        problem = "a call of the embedding model has not finished for 400 s (limit 300 s)"
        stuck = api.get("/healthz")
        assert stuck.status_code == 503 and stuck.json()["status"] == "stuck"
