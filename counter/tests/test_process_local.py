import os
from dataclasses import dataclass, field

import pytest

from counter.process_local import ProcessLocal, process_local_renew


@dataclass
class _Sample(ProcessLocal):
    touched: bool = False
    seen: list = field(default_factory=list)


SAMPLE = _Sample()


def fresh(state: _Sample) -> bool:
    return (state.touched, state.seen) == (False, [])


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_starts_with_fresh_states(run):
    assert fresh(SAMPLE)
    SAMPLE.touched = True  # what the other run must not see
    SAMPLE.seen.append(run)


def test_a_renewed_state_is_back_to_its_defaults_in_place():
    seen = SAMPLE.seen
    SAMPLE.seen.append(1)
    process_local_renew()
    assert fresh(SAMPLE)
    assert SAMPLE.seen is not seen and seen == [1]  # a new list: the old one is not emptied


def test_a_forked_process_starts_with_fresh_states():
    """Threads and open lock files do not belong to a forked child: it makes its own."""
    SAMPLE.touched = True
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and leave without running pytest's clean-up
        os.write(write_end, b"inherited" if SAMPLE.touched else b"fresh")
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as child:
        assert child.read() == b"fresh"
    assert os.waitpid(pid, 0)[1] == 0
    assert SAMPLE.touched  # the parent keeps its own
