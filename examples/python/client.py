"""A small pax-ledger client in Python, with grpcio and stubs generated from proto/.

Run `examples/python/setup.sh` once (it installs the packages of requirements.txt and
generates the stubs into examples/python/gen/), then, against a running server:

    python3 examples/python/client.py [ADDRESS]        # default 127.0.0.1:50051

It appends an illustrative participant (labelled illustrative = "true"), reads the event back
by its id, lists the members, and verifies the ledger's latest checkpoint: a C2SP signed note,
checked with the Ed25519 key the verifier key names (docs/AUDIT.md §6). Against a ledger with
principals, set PAX_LEDGER_TOKEN to a token whose principal may record members (secretariat).
"""

import base64
import hashlib
import os
import pathlib
import sys
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "gen"))

import grpc  # noqa: E402
from cryptography.exceptions import InvalidSignature  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: E402
from pax.ledger.v1 import audit_pb2, audit_pb2_grpc  # noqa: E402
from pax.ledger.v1 import ledger_pb2, ledger_pb2_grpc  # noqa: E402
from pax.ledger.v1 import query_pb2, query_pb2_grpc  # noqa: E402


def metadata():
    """The bearer token of PAX_LEDGER_TOKEN, if one is set."""
    token = os.environ.get("PAX_LEDGER_TOKEN")
    return [("authorization", f"Bearer {token}")] if token else []


def append_member(channel, code, name):
    """Appends `code` joining as a member state; returns the AppendedEvent."""
    event = ledger_pb2.ProposedEvent(
        event_id=str(uuid.uuid4()),
        data=ledger_pb2.EventData(
            member_joined=ledger_pb2.MemberJoined(
                code=code,
                name=name,
                kind=ledger_pb2.MEMBER_KIND_STATE,
                role=ledger_pb2.MEMBER_ROLE_MEMBER,
            )
        ),
        metadata=ledger_pb2.EventMetadata(labels={"illustrative": "true"}),
    )
    stub = ledger_pb2_grpc.LedgerServiceStub(channel)
    response = stub.Append(ledger_pb2.AppendRequest(events=[event]), metadata=metadata())
    return response.events[0]


def get_event(channel, event_id):
    """The recorded event with `event_id`."""
    stub = ledger_pb2_grpc.LedgerServiceStub(channel)
    return stub.GetEvent(ledger_pb2.GetEventRequest(event_id=event_id), metadata=metadata())


def list_members(channel):
    """Every participant, page after page."""
    stub = query_pb2_grpc.QueryServiceStub(channel)
    members, token = [], ""
    while True:
        page = stub.ListMembers(query_pb2.ListMembersRequest(page_size=100, page_token=token), metadata=metadata())
        members.extend(page.members)
        token = page.next_page_token
        if not token:
            return members


def latest_checkpoint(channel):
    """The latest signed checkpoint (a note and the verifier key)."""
    stub = audit_pb2_grpc.AuditServiceStub(channel)
    return stub.GetCheckpoint(audit_pb2.GetCheckpointRequest(), metadata=metadata())


def verify_note(note, verifier_key):
    """Whether `note` (a C2SP signed note) carries a valid Ed25519 signature of the key that
    `verifier_key` (`<name>+<key id, 8 hex>+<base64(0x01 || key)>`) names, under that name."""
    name, key_id_hex, encoded = verifier_key.split("+", 2)
    raw = base64.b64decode(encoded)
    if len(raw) != 33 or raw[0] != 0x01:
        raise ValueError("not an Ed25519 verifier key")
    public_key = raw[1:]
    key_id = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if key_id.hex() != key_id_hex:
        raise ValueError("the verifier key's id is not its key's")
    text, _, signatures = note.partition("\n\n")
    signed = (text + "\n").encode()
    for line in signatures.splitlines():
        dash, _, rest = line.partition(" ")
        line_name, _, blob = rest.partition(" ")
        if dash != "\u2014" or line_name != name:
            continue
        try:
            decoded = base64.b64decode(blob, validate=True)
        except ValueError:
            continue
        if len(decoded) != 68 or decoded[:4] != key_id:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(decoded[4:], signed)
            return True
        except InvalidSignature:
            return False
    return False


def main(address):
    with grpc.insecure_channel(address) as channel:
        appended = append_member(channel, "ZZ", "Illustrative participant (not a member of the initiative)")
        print(f"appended {appended.event_id} at position {appended.position} in {appended.stream}")
        event = get_event(channel, appended.event_id)
        print(f"read back: {event.event_type} of {event.data.member_joined.code} recorded {event.record_time.ToJsonString()}")
        members = list_members(channel)
        print(f"{len(members)} participants: {', '.join(m.code for m in members)}")
        checkpoint = latest_checkpoint(channel)
        verdict = "verifies" if verify_note(checkpoint.note, checkpoint.verifier_key) else "DOES NOT verify"
        print(f"checkpoint at position {checkpoint.position} {verdict} under {checkpoint.verifier_key}")
        return 0 if verdict == "verifies" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"))
