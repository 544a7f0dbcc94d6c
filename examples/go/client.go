// A small pax-ledger client in Go, with grpc-go and stubs generated from proto/: the twin of
// examples/python/client.py.
//
// Build it with `bash examples/go/build.sh` (offline, from Debian's packages: it generates the
// stubs into target/go-client/ and prints the built client's path), then, against a running
// server:
//
//	target/go-client/pax-ledger-go-client [-code ZZ] [-flip text|signature] [ADDRESS]   # default 127.0.0.1:50051
//
// It appends an illustrative participant (labelled illustrative = "true"), reads the event back
// by its id, lists the members, and verifies the ledger's latest checkpoint: a C2SP signed note,
// checked with crypto/ed25519 and the key the verifier key names (docs/AUDIT.md §6). Against a
// ledger with principals, set PAX_LEDGER_TOKEN to a token whose principal may record members
// (secretariat). With -flip it then checks the checkpoint again after flipping one bit of it (of
// the note's tree size, or of the log's signature), which must fail. Exit status: 0 when every
// note it checked verifies, 1 when one does not (so always with -flip), 2 on an error.
package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	pb "paxledger/v1"
)

// protoCodec marshals with google.golang.org/protobuf (the API the stubs are generated for);
// grpc-go 1.33's default codec is the older github.com/golang/protobuf 1.3 one, which does not
// know these messages' oneofs.
type protoCodec struct{}

func (protoCodec) Marshal(v interface{}) ([]byte, error) { return proto.Marshal(v.(proto.Message)) }
func (protoCodec) Unmarshal(data []byte, v interface{}) error {
	return proto.Unmarshal(data, v.(proto.Message))
}
func (protoCodec) Name() string { return "proto" }

// withToken carries the bearer token of PAX_LEDGER_TOKEN, if one is set.
func withToken(ctx context.Context) context.Context {
	if token := os.Getenv("PAX_LEDGER_TOKEN"); token != "" {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	return ctx
}

// newUUID is a random (version 4) UUID in canonical form.
func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// appendMember appends `code` joining as a member state; it returns the appended event.
func appendMember(ctx context.Context, conn *grpc.ClientConn, code, name string) (*pb.AppendedEvent, error) {
	event := &pb.ProposedEvent{
		EventId: newUUID(),
		Data: &pb.EventData{Kind: &pb.EventData_MemberJoined{MemberJoined: &pb.MemberJoined{
			Code: code,
			Name: name,
			Kind: pb.MemberKind_MEMBER_KIND_STATE,
			Role: pb.MemberRole_MEMBER_ROLE_MEMBER,
		}}},
		Metadata: &pb.EventMetadata{Labels: map[string]string{"illustrative": "true"}},
	}
	response, err := pb.NewLedgerServiceClient(conn).Append(withToken(ctx), &pb.AppendRequest{Events: []*pb.ProposedEvent{event}})
	if err != nil {
		return nil, err
	}
	return response.Events[0], nil
}

// listMembers is every participant, page after page.
func listMembers(ctx context.Context, conn *grpc.ClientConn) ([]*pb.Member, error) {
	query := pb.NewQueryServiceClient(conn)
	var members []*pb.Member
	token := ""
	for {
		page, err := query.ListMembers(withToken(ctx), &pb.ListMembersRequest{PageSize: 100, PageToken: token})
		if err != nil {
			return nil, err
		}
		members = append(members, page.Members...)
		if token = page.NextPageToken; token == "" {
			return members, nil
		}
	}
}

// verifyNote reports whether note (a C2SP signed note) carries a valid Ed25519 signature of the
// key that verifierKey (`<name>+<key id, 8 hex>+<base64(0x01 || key)>`) names, under that name.
// An error means the verifier key itself is malformed.
func verifyNote(note, verifierKey string) (bool, error) {
	parts := strings.SplitN(verifierKey, "+", 3)
	if len(parts) != 3 {
		return false, errors.New("not a verifier key")
	}
	name, keyIDHex, encoded := parts[0], parts[1], parts[2]
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil || len(raw) != 33 || raw[0] != 0x01 {
		return false, errors.New("not an Ed25519 verifier key")
	}
	publicKey := ed25519.PublicKey(raw[1:])
	digest := sha256.Sum256(append([]byte(name+"\n"), raw...))
	keyID := digest[:4]
	if hex.EncodeToString(keyID) != keyIDHex {
		return false, errors.New("the verifier key's id is not its key's")
	}
	text, signatures, _ := strings.Cut(note, "\n\n")
	signed := []byte(text + "\n")
	for _, line := range strings.Split(signatures, "\n") {
		dash, rest, _ := strings.Cut(line, " ")
		lineName, blob, _ := strings.Cut(rest, " ")
		if dash != "\u2014" || lineName != name {
			continue
		}
		decoded, err := base64.StdEncoding.DecodeString(blob)
		if err != nil || len(decoded) != 68 || !bytes.Equal(decoded[:4], keyID) {
			continue
		}
		return ed25519.Verify(publicKey, signed, decoded[4:]), nil
	}
	return false, nil
}

// flipBit flips one bit of note: of its tree size (what = "text") or of the log's signature
// (what = "signature"), as tests/python/test_client.py does.
func flipBit(note string, position uint64, what string) (string, error) {
	text, signatures, _ := strings.Cut(note, "\n\n")
	switch what {
	case "text":
		size := "\n" + strconv.FormatUint(position, 10) + "\n"
		if !strings.Contains(text, size) {
			return "", errors.New("the note states no tree size")
		}
		return strings.Replace(text, size, "\n"+strconv.FormatUint(position^1, 10)+"\n", 1) + "\n\n" + signatures, nil
	case "signature":
		fields := strings.Split(strings.SplitN(signatures, "\n", 2)[0], " ")
		if len(fields) != 3 {
			return "", errors.New("the note has no signature line")
		}
		raw, err := base64.StdEncoding.DecodeString(fields[2])
		if err != nil || len(raw) <= 10 {
			return "", errors.New("the note's signature is not base64")
		}
		raw[10] ^= 0x01
		return text + "\n\n" + fields[0] + " " + fields[1] + " " + base64.StdEncoding.EncodeToString(raw) + "\n", nil
	}
	return "", fmt.Errorf("-flip takes text or signature, not %q", what)
}

func verdict(ok bool) string {
	if ok {
		return "verifies"
	}
	return "DOES NOT verify"
}

func run(address, code, flip string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, address, grpc.WithInsecure(), grpc.WithBlock(),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(protoCodec{})))
	if err != nil {
		return false, fmt.Errorf("connecting to %s: %w", address, err)
	}
	defer conn.Close()

	appended, err := appendMember(ctx, conn, code, "Illustrative participant (not a member of the initiative)")
	if err != nil {
		return false, fmt.Errorf("Append: %w", err)
	}
	fmt.Printf("appended %s at position %d in %s\n", appended.EventId, appended.Position, appended.Stream)
	event, err := pb.NewLedgerServiceClient(conn).GetEvent(withToken(ctx), &pb.GetEventRequest{EventId: appended.EventId})
	if err != nil {
		return false, fmt.Errorf("GetEvent: %w", err)
	}
	recorded := event.RecordTime.AsTime().UTC().Format(time.RFC3339Nano)
	fmt.Printf("read back: %s of %s recorded %s\n", event.EventType, event.Data.GetMemberJoined().GetCode(), recorded)
	members, err := listMembers(ctx, conn)
	if err != nil {
		return false, fmt.Errorf("ListMembers: %w", err)
	}
	codes := make([]string, len(members))
	for i, member := range members {
		codes[i] = member.Code
	}
	fmt.Printf("%d participants: %s\n", len(members), strings.Join(codes, ", "))
	checkpoint, err := pb.NewAuditServiceClient(conn).GetCheckpoint(withToken(ctx), &pb.GetCheckpointRequest{})
	if err != nil {
		return false, fmt.Errorf("GetCheckpoint: %w", err)
	}
	ok, err := verifyNote(checkpoint.Note, checkpoint.VerifierKey)
	if err != nil {
		return false, err
	}
	fmt.Printf("checkpoint at position %d %s under %s\n", checkpoint.Position, verdict(ok), checkpoint.VerifierKey)
	if flip != "" {
		flipped, err := flipBit(checkpoint.Note, checkpoint.Position, flip)
		if err != nil {
			return false, err
		}
		flippedOK, err := verifyNote(flipped, checkpoint.VerifierKey)
		if err != nil {
			return false, err
		}
		fmt.Printf("with one bit of its %s flipped, it %s\n", flip, verdict(flippedOK))
		ok = ok && flippedOK
	}
	return ok, nil
}

func main() {
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [-code CODE] [-flip text|signature] [ADDRESS]\n", os.Args[0])
		flag.PrintDefaults()
	}
	code := flag.String("code", "ZZ", "the illustrative participant's code")
	flip := flag.String("flip", "", "check the checkpoint again with one bit flipped: of its text or its signature")
	flag.Parse()
	address := "127.0.0.1:50051"
	switch flag.NArg() {
	case 0:
	case 1:
		address = flag.Arg(0)
	default:
		flag.Usage()
		os.Exit(2)
	}
	if *flip != "" && *flip != "text" && *flip != "signature" {
		fmt.Fprintf(os.Stderr, "-flip takes text or signature, not %q\n", *flip)
		os.Exit(2)
	}
	ok, err := run(address, *code, *flip)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}
