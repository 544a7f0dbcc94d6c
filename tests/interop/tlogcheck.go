// Command tlogcheck verifies pax-ledger's transparency artefacts with Go's own
// implementations of signed notes and RFC 6962 Merkle proofs
// (golang.org/x/mod/sumdb/note and golang.org/x/mod/sumdb/tlog), independently of
// the ledger's Rust code.
//
// It reads one JSON object from standard input:
//
//	{
//	  "verifier_key": "<name>+<8 hex key id>+<base64(0x01 || Ed25519 public key)>",
//	  "note": "<signed checkpoint note (c2sp.org/tlog-checkpoint, c2sp.org/signed-note)>",
//	  "inclusion": {"leaf_index": 5, "tree_size": 9, "record_hash": "<base64>",
//	                "proof": ["<base64>", ...], "root": "<base64>"},
//	  "consistency": {"old_size": 3, "new_size": 9, "old_root": "<base64>",
//	                  "new_root": "<base64>", "proof": ["<base64>", ...]}
//	}
//
// "inclusion" and "consistency" are optional. It prints one JSON line,
//
//	{"note":"ok"|"<error>","inclusion":"ok"|"<error>"|null,"consistency":"ok"|"<error>"|null}
//
// and exits 0 only when every check present is "ok", otherwise 1.
//
// The leaf of a record is SHA-256(0x00 || record_hash) (tlog.RecordHash), an interior
// node SHA-256(0x01 || left || right) (tlog.NodeHash). Proofs are lists of 32-byte
// hashes in RFC 6962 / RFC 9162 order: an inclusion proof is the audit path from the
// leaf's sibling up to the root's child, a consistency proof is RFC 6962 PROOF(m, D[n]).
//
// Build (Go 1.19 and x/mod from Debian, no module proxy): see build.sh beside this file.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// maxTreeSize bounds every tree size and index taken from the input. tlog's internal
// maxpow2 loops forever for a subtree of more than 2^62 leaves (its 1<<63 overflows
// to a negative number), so a larger size must never reach tlog.CheckRecord or
// tlog.CheckTree: an auditor's tool must not hang on hostile input.
const maxTreeSize = int64(1) << 62

// maxInputBytes bounds what is read from standard input.
const maxInputBytes = 16 << 20

// Input is the JSON object read from standard input. Pointers tell a missing field
// from a zero one: every field of a present section is required.
type Input struct {
	VerifierKey *string           `json:"verifier_key"`
	Note        *string           `json:"note"`
	Inclusion   *InclusionInput   `json:"inclusion"`
	Consistency *ConsistencyInput `json:"consistency"`
}

// InclusionInput asks whether the record with chain hash RecordHash is leaf LeafIndex
// of the tree of TreeSize leaves with root Root.
type InclusionInput struct {
	LeafIndex  *int64    `json:"leaf_index"`
	TreeSize   *int64    `json:"tree_size"`
	RecordHash *string   `json:"record_hash"`
	Proof      *[]string `json:"proof"`
	Root       *string   `json:"root"`
}

// ConsistencyInput asks whether the tree of OldSize leaves with root OldRoot is a
// prefix of the tree of NewSize leaves with root NewRoot.
type ConsistencyInput struct {
	OldSize *int64    `json:"old_size"`
	NewSize *int64    `json:"new_size"`
	OldRoot *string   `json:"old_root"`
	NewRoot *string   `json:"new_root"`
	Proof   *[]string `json:"proof"`
}

// Result is the JSON line printed. Inclusion and Consistency are nil (null) when the
// input had no such section.
type Result struct {
	Note        string  `json:"note"`
	Inclusion   *string `json:"inclusion"`
	Consistency *string `json:"consistency"`
}

// OK reports whether every check that was asked for passed.
func (r Result) OK() bool {
	return r.Note == "ok" &&
		(r.Inclusion == nil || *r.Inclusion == "ok") &&
		(r.Consistency == nil || *r.Consistency == "ok")
}

// Checkpoint is the parsed text of a c2sp.org/tlog-checkpoint note.
type Checkpoint struct {
	Origin     string
	Size       int64
	Root       tlog.Hash
	Extensions []string
}

// Check runs every check the input asks for. The proof checks run even when the
// note fails (so each field reports its own verdict); they are tied to the note's
// root only when the note verified.
func Check(in Input) Result {
	var res Result
	cp, err := checkNote(in.VerifierKey, in.Note)
	if err != nil {
		res.Note = err.Error()
		cp = nil
	} else {
		res.Note = "ok"
	}
	if in.Inclusion != nil {
		res.Inclusion = verdict(checkInclusion(in.Inclusion, cp))
	}
	if in.Consistency != nil {
		res.Consistency = verdict(checkConsistency(in.Consistency, cp))
	}
	return res
}

// CheckJSON decodes one JSON object and checks it. Input that is not one well-formed
// object of the expected shape (unknown fields are refused) fails with the reason in
// the "note" field and null for the others.
func CheckJSON(data []byte) Result {
	var in Input
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(&in)
	if err == nil {
		if _, e := dec.Token(); e != io.EOF {
			err = errors.New("more than one JSON value")
		}
	}
	if err != nil {
		return Result{Note: "invalid input: " + err.Error()}
	}
	return Check(in)
}

func verdict(err error) *string {
	s := "ok"
	if err != nil {
		s = err.Error()
	}
	return &s
}

// checkNote opens the signed note with the one verifier key given and parses its
// text as a checkpoint whose origin is the key's name.
func checkNote(vkey, msg *string) (*Checkpoint, error) {
	if vkey == nil {
		return nil, errors.New("missing verifier_key")
	}
	if msg == nil {
		return nil, errors.New("missing note")
	}
	verifier, err := note.NewVerifier(*vkey)
	if err != nil {
		return nil, fmt.Errorf("verifier key: %v", err)
	}
	n, err := note.Open([]byte(*msg), note.VerifierList(verifier))
	if err != nil {
		return nil, fmt.Errorf("note: %v", err)
	}
	// With a single known verifier, Open returns without error only if it verified a
	// signature by that key; check it all the same.
	signed := false
	for _, sig := range n.Sigs {
		if sig.Name == verifier.Name() && sig.Hash == verifier.KeyHash() {
			signed = true
		}
	}
	if !signed {
		return nil, errors.New("note: no verified signature by the verifier key")
	}
	cp, err := ParseCheckpoint(n.Text)
	if err != nil {
		return nil, err
	}
	if cp.Origin != verifier.Name() {
		return nil, fmt.Errorf("checkpoint origin %q is not the verifier key's name %q", cp.Origin, verifier.Name())
	}
	return cp, nil
}

// ParseCheckpoint parses a note text (ending in newline, as note.Open returns it) as
// a c2sp.org/tlog-checkpoint body: origin, decimal tree size, base64 root hash, then
// any number of non-empty extension lines.
func ParseCheckpoint(text string) (*Checkpoint, error) {
	if !strings.HasSuffix(text, "\n") {
		return nil, errors.New("checkpoint: text does not end in a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return nil, fmt.Errorf("checkpoint: %d lines, want at least 3 (origin, size, root)", len(lines))
	}
	cp := &Checkpoint{Origin: lines[0], Extensions: lines[3:]}
	if cp.Origin == "" {
		return nil, errors.New("checkpoint: empty origin line")
	}
	size, err := parseDecimal(lines[1])
	if err != nil {
		return nil, fmt.Errorf("checkpoint: tree size: %v", err)
	}
	cp.Size = size
	if cp.Root, err = parseHash(lines[2]); err != nil {
		return nil, fmt.Errorf("checkpoint: root: %v", err)
	}
	for i, ext := range cp.Extensions {
		if ext == "" {
			return nil, fmt.Errorf("checkpoint: extension line %d is empty", i+1)
		}
	}
	return cp, nil
}

// parseDecimal parses a tree size line: ASCII digits, no sign, no leading zero
// (except "0" itself), at most maxTreeSize.
func parseDecimal(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("%q has a leading zero", s)
	}
	var n int64
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", s)
		}
		n = n*10 + int64(c-'0')
		if n > maxTreeSize {
			return 0, fmt.Errorf("%q is larger than %d", s, maxTreeSize)
		}
	}
	return n, nil
}

// parseHash decodes canonical padded standard base64 of exactly 32 bytes.
func parseHash(s string) (tlog.Hash, error) {
	var h tlog.Hash
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return h, fmt.Errorf("%q is not base64: %v", s, err)
	}
	if len(b) != tlog.HashSize {
		return h, fmt.Errorf("%q decodes to %d bytes, want %d", s, len(b), tlog.HashSize)
	}
	// Strict() rejects non-zero padding bits; also rule out line breaks, which
	// DecodeString skips.
	if base64.StdEncoding.EncodeToString(b) != s {
		return h, fmt.Errorf("%q is not canonical base64", s)
	}
	copy(h[:], b)
	return h, nil
}

func parseProof(p *[]string) ([]tlog.Hash, error) {
	if p == nil {
		return nil, errors.New("missing proof")
	}
	out := make([]tlog.Hash, len(*p))
	for i, s := range *p {
		h, err := parseHash(s)
		if err != nil {
			return nil, fmt.Errorf("proof[%d]: %v", i, err)
		}
		out[i] = h
	}
	return out, nil
}

func requireSize(name string, v *int64) (int64, error) {
	if v == nil {
		return 0, fmt.Errorf("missing %s", name)
	}
	if *v < 0 || *v > maxTreeSize {
		return 0, fmt.Errorf("%s %d is out of range [0, %d]", name, *v, maxTreeSize)
	}
	return *v, nil
}

func requireHash(name string, v *string) (tlog.Hash, error) {
	if v == nil {
		return tlog.Hash{}, fmt.Errorf("missing %s", name)
	}
	h, err := parseHash(*v)
	if err != nil {
		return h, fmt.Errorf("%s: %v", name, err)
	}
	return h, nil
}

// checkInclusion verifies the audit path with tlog.CheckRecord. When the proof is for
// the checkpoint's size, its root must be the checkpoint's root.
func checkInclusion(in *InclusionInput, cp *Checkpoint) error {
	index, err := requireSize("leaf_index", in.LeafIndex)
	if err != nil {
		return err
	}
	size, err := requireSize("tree_size", in.TreeSize)
	if err != nil {
		return err
	}
	record, err := requireHash("record_hash", in.RecordHash)
	if err != nil {
		return err
	}
	root, err := requireHash("root", in.Root)
	if err != nil {
		return err
	}
	proof, err := parseProof(in.Proof)
	if err != nil {
		return err
	}
	if index >= size {
		return fmt.Errorf("leaf_index %d is not below tree_size %d", index, size)
	}
	if cp != nil && size == cp.Size && root != cp.Root {
		return fmt.Errorf("root %s is not the checkpoint's root %s at size %d", root, cp.Root, size)
	}
	// tlog.RecordHash(data) = SHA-256(0x00 || data): the ledger's leaf hash of a record
	// whose chain hash is data.
	if err := tlog.CheckRecord(proof, size, root, index, tlog.RecordHash(record[:])); err != nil {
		return fmt.Errorf("inclusion proof of leaf %d in tree of size %d: %v", index, size, err)
	}
	return nil
}

// checkConsistency verifies the consistency proof with tlog.CheckTree. When either
// size is the checkpoint's size, that root must be the checkpoint's root.
func checkConsistency(in *ConsistencyInput, cp *Checkpoint) error {
	oldSize, err := requireSize("old_size", in.OldSize)
	if err != nil {
		return err
	}
	newSize, err := requireSize("new_size", in.NewSize)
	if err != nil {
		return err
	}
	oldRoot, err := requireHash("old_root", in.OldRoot)
	if err != nil {
		return err
	}
	newRoot, err := requireHash("new_root", in.NewRoot)
	if err != nil {
		return err
	}
	proof, err := parseProof(in.Proof)
	if err != nil {
		return err
	}
	if cp != nil && newSize == cp.Size && newRoot != cp.Root {
		return fmt.Errorf("new_root %s is not the checkpoint's root %s at size %d", newRoot, cp.Root, newSize)
	}
	if cp != nil && oldSize == cp.Size && oldRoot != cp.Root {
		return fmt.Errorf("old_root %s is not the checkpoint's root %s at size %d", oldRoot, cp.Root, oldSize)
	}
	// tlog.CheckTree refuses old_size 0 ("invalid inputs"): RFC 6962 defines
	// consistency proofs only for 0 < m <= n. That is passed on, not papered over.
	if err := tlog.CheckTree(proof, newSize, newRoot, oldSize, oldRoot); err != nil {
		return fmt.Errorf("consistency proof from size %d to size %d: %v", oldSize, newSize, err)
	}
	return nil
}

// run reads stdin, writes the result line and returns the exit code.
func run(stdin io.Reader, stdout io.Writer) int {
	data, err := io.ReadAll(io.LimitReader(stdin, maxInputBytes+1))
	var res Result
	switch {
	case err != nil:
		res = Result{Note: "invalid input: " + err.Error()}
	case len(data) > maxInputBytes:
		res = Result{Note: fmt.Sprintf("invalid input: more than %d bytes", maxInputBytes)}
	default:
		res = CheckJSON(data)
	}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "tlogcheck:", err)
		return 1
	}
	if res.OK() {
		return 0
	}
	return 1
}

func main() {
	os.Exit(run(os.Stdin, os.Stdout))
}
