"""The Python client (examples/python) against the real server binary: health, reflection, the
example end to end, and the checkpoint's signature refused after one flipped bit.

Run by `tests/it/python_client.rs` (so by `cargo nextest run`), after
`examples/python/setup.sh`; alone: `PAX_LEDGER_BIN=target/debug/pax-ledger python3 -m pytest
tests/python`.
"""

import base64
import os
import pathlib
import subprocess
import sys

import grpc
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "python"))

import client  # noqa: E402  (puts the generated stubs on the path)
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1 import reflection_pb2, reflection_pb2_grpc  # noqa: E402

SERVICES = [
    "pax.ledger.v1.LedgerService",
    "pax.ledger.v1.QueryService",
    "pax.ledger.v1.ProjectionService",
    "pax.ledger.v1.AuditService",
    "pax.ledger.v1.AccessService",
]


@pytest.fixture(scope="module")
def address(tmp_path_factory):
    """A fresh `pax-ledger serve` on 127.0.0.1:0 (an open ledger), stopped with SIGTERM."""
    binary = os.environ.get("PAX_LEDGER_BIN") or str(ROOT / "target" / "debug" / "pax-ledger")
    data = tmp_path_factory.mktemp("ledger") / "data"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PAX_LEDGER_")}
    env["RUST_LOG"] = "warn"
    server = subprocess.Popen(
        [binary, "serve", "--data", str(data), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    addr = None
    for line in server.stdout:
        if line.startswith("pax-ledger listening on "):
            addr = line.removeprefix("pax-ledger listening on ").strip()
            break
    assert addr, "the server did not say where it listens"
    yield addr
    server.terminate()
    assert server.wait(timeout=10) == 0


def test_every_service_is_serving(address):
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ["", *SERVICES]:
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, service


def test_reflection_lists_the_services(address):
    with grpc.insecure_channel(address) as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
        listed = {service.name for answer in answers for service in answer.list_services_response.service}
    assert set(SERVICES) <= listed, listed


def test_the_example_runs_end_to_end(address):
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "python" / "client.py"), address],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "in member-ZZ" in run.stdout
    assert "read back: member_joined of ZZ" in run.stdout
    assert "verifies under pax-ledger/" in run.stdout


def test_a_flipped_bit_fails_the_checkpoint_signature(address):
    with grpc.insecure_channel(address) as channel:
        client.append_member(channel, "ZY", "Another illustrative participant")
        checkpoint = client.latest_checkpoint(channel)
    note, key = checkpoint.note, checkpoint.verifier_key
    assert client.verify_note(note, key)
    text, _, signatures = note.partition("\n\n")
    # One bit of the signed text: the tree size.
    flipped_text = text.replace(f"\n{checkpoint.position}\n", f"\n{checkpoint.position ^ 1}\n", 1)
    assert flipped_text != text
    assert not client.verify_note(flipped_text + "\n\n" + signatures, key)
    # One bit of the signature itself.
    dash, name, blob = signatures.splitlines()[0].split(" ")
    raw = bytearray(base64.b64decode(blob))
    raw[10] ^= 0x01
    forged = f"{dash} {name} {base64.b64encode(bytes(raw)).decode()}\n"
    assert not client.verify_note(text + "\n\n" + forged, key)
