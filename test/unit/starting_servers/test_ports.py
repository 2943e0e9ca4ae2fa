"""Port reservations: never the same number twice on one machine, whoever asks, until released."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from processes.ports import PortReservationError, reservable_range, reserve_port

REPOSITORY = Path(__file__).resolve().parents[3]


def test_reservations_held_at_once_are_all_different(tmp_path: Path) -> None:
    held = [reserve_port(lock_directory=tmp_path) for _ in range(50)]
    try:
        assert len({reservation.port for reservation in held}) == 50
    finally:
        for reservation in held:
            reservation.release()


def test_ports_come_from_below_the_kernels_ephemeral_range(tmp_path: Path) -> None:
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    with reserve_port(lock_directory=tmp_path) as reservation:
        assert reservation.port in reservable_range()
        assert reservation.port < ephemeral_low


@pytest.fixture
def one_port() -> Iterator[range]:
    """A one-number range, so a test controls exactly which port is asked for. The port stays reserved
    machine-wide for the whole test, so no other suite on the machine binds it meanwhile; the test's
    own reservations use a private lock directory."""
    with reserve_port() as held:
        yield range(held.port, held.port + 1)


def test_a_port_another_process_holds_is_never_handed_out_until_it_dies(
    tmp_path: Path, one_port: range
) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import signal
                from pathlib import Path
                from processes.ports import reserve_port
                reservation = reserve_port(lock_directory=Path({str(tmp_path)!r}),
                                           candidates=range({one_port.start}, {one_port.stop}))
                print(reservation.port, flush=True)
                signal.pause()
            """),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPOSITORY,
    )
    try:
        assert holder.stdout is not None
        assert int(holder.stdout.readline()) == one_port.start
        with pytest.raises(PortReservationError, match=f"no free port in {one_port.start}-{one_port.start}"):
            reserve_port(lock_directory=tmp_path, candidates=one_port)
        holder.send_signal(signal.SIGKILL)  # no clean-up: the kernel drops the lock
        holder.wait()
        with reserve_port(lock_directory=tmp_path, candidates=one_port) as reservation:
            assert reservation.port == one_port.start
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_a_port_some_other_program_listens_on_is_skipped(tmp_path: Path, one_port: range) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", one_port.start))
        listener.listen()
        with pytest.raises(PortReservationError):
            reserve_port(lock_directory=tmp_path, candidates=one_port)


def test_a_released_port_can_be_reserved_again(tmp_path: Path, one_port: range) -> None:
    first = reserve_port(lock_directory=tmp_path, candidates=one_port)
    with pytest.raises(PortReservationError):
        reserve_port(lock_directory=tmp_path, candidates=one_port)
    first.release()
    first.release()  # twice is harmless
    with reserve_port(lock_directory=tmp_path, candidates=one_port) as again:
        assert again.port == one_port.start
