import os

from counter import process


def test_each_test_gets_a_fresh_state(process_state):
    assert process.state is process_state
    assert process_state == process.ProcessState()


def test_a_forked_process_starts_with_a_fresh_state(process_state):
    """Threads and open lock files do not belong to a forked child: it makes its own."""
    process_state.migrations_applied = True
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and leave without running pytest's clean-up
        fresh = process.state is not process_state and not process.state.migrations_applied
        os.write(write_end, b"fresh" if fresh else b"inherited")
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as child:
        assert child.read() == b"fresh"
    assert os.waitpid(pid, 0)[1] == 0
    assert process.state is process_state and process_state.migrations_applied
