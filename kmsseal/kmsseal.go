package kmsseal

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/dropboxsign-go/dropboxsign"
	"gocloud.dev/gcerrors"
	"gocloud.dev/secrets"
)

// DataKeySize is the size of a data key: an AES-256 key, as
// [dropboxsign.NewSealer] takes.
const DataKeySize = 32

// Error is a failure to wrap or unwrap a data key. It names the wrapped
// key by its position in the list given (1 for the first), and the KMS's
// failure, never key material.
type Error struct {
	// Op is what failed: "wrap" (an Encrypt at the KMS), "unwrap" (a
	// Decrypt), or "check" (input refused before any KMS call, or a KMS
	// answer that is not a data key).
	Op string
	// Index is the wrapped key's position in the list given to NewSealer
	// (1 for the first); 0 when there was no list.
	Index int
	// Count is how many wrapped keys the list had (0 when there was none).
	Count int
	// Code is the KMS's error code, as gocloud.dev/gcerrors tells it:
	// Unknown when the driver tells none (localsecrets and hashivault,
	// network failures), OK for an error found here without the KMS.
	Code gcerrors.ErrorCode
	// Err is the KMS's error, or what is wrong with the input.
	Err error
}

func (e *Error) Error() string {
	what := "a data key"
	if e.Index > 0 {
		what = fmt.Sprintf("wrapped data key %d of %d", e.Index, e.Count)
	}
	switch e.Op {
	case "wrap":
		return fmt.Sprintf("kmsseal: wrapping %s with the KMS (code %s, class %s): %v", strings.TrimPrefix(what, "wrapped "), e.Code, e.Class(), e.Err)
	case "unwrap":
		return fmt.Sprintf("kmsseal: unwrapping %s with the KMS (code %s, class %s): %v", what, e.Code, e.Class(), e.Err)
	}
	return fmt.Sprintf("kmsseal: %s: %v", what, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Class tells what can be done about e, in [dropboxsign.Class] terms
// ([dropboxsign.Classify] asks it, through any wrapping): Temporary for a KMS that did not answer or
// failed on its side (gcerrors Unknown, Internal, ResourceExhausted,
// DeadlineExceeded, Canceled: try again, with backoff, or let the
// process restart); Misconfigured for a KMS that refused (NotFound,
// AlreadyExists, InvalidArgument, PermissionDenied, FailedPrecondition, Unimplemented:
// a wrong key URL, a wrapped key made under another KEK or damaged, a
// missing permission, a disabled key) and for bad input found here.
//
// A driver that gives no code (localsecrets; hashivault; any network
// failure) is Unknown, so Temporary: with those, a wrapped key from
// another KEK is told only by the message.
func (e *Error) Class() dropboxsign.Class {
	switch e.Code {
	case gcerrors.OK, gcerrors.NotFound, gcerrors.AlreadyExists, gcerrors.InvalidArgument,
		gcerrors.PermissionDenied, gcerrors.FailedPrecondition, gcerrors.Unimplemented:
		return dropboxsign.Misconfigured
	}
	return dropboxsign.Temporary
}

func checkErr(index, count int, format string, args ...any) *Error {
	return &Error{Op: "check", Index: index, Count: count, Code: gcerrors.OK, Err: fmt.Errorf(format, args...)}
}

var errNoKeeper = errors.New("no KMS keeper (nil *secrets.Keeper): open one with secrets.OpenKeeper")

// NewDataKey makes a data key (32 bytes from crypto/rand) and returns it
// wrapped by keeper's key-encryption key: one Encrypt at the KMS. The
// wrapped key is what the operator keeps in configuration; it is useless
// without the KMS. The data key itself is not returned: it never leaves
// this function but wrapped.
func NewDataKey(ctx context.Context, keeper *secrets.Keeper) (wrapped []byte, err error) {
	key := make([]byte, DataKeySize)
	rand.Read(key) // never fails (crypto/rand)
	defer clear(key)
	return Wrap(ctx, keeper, key)
}

// Wrap returns key, a 32-byte data key, wrapped by keeper's
// key-encryption key: one Encrypt at the KMS. It is how a fleet that
// seals with raw keys adopts a KMS: the wrapped key is the same data key
// (same [dropboxsign.KeyID]), so every token sealed before still opens and
// nothing needs sealing again.
func Wrap(ctx context.Context, keeper *secrets.Keeper, key []byte) ([]byte, error) {
	if keeper == nil {
		return nil, checkErr(0, 0, "%w", errNoKeeper)
	}
	if len(key) != DataKeySize {
		return nil, checkErr(0, 0, "a data key has %d bytes, want %d (AES-256)", len(key), DataKeySize)
	}
	wrapped, err := keeper.Encrypt(ctx, key)
	if err != nil {
		return nil, &Error{Op: "wrap", Code: gcerrors.Code(err), Err: err}
	}
	return wrapped, nil
}

// unwrap returns the data key in wrapped (one Decrypt at the KMS); index
// and count name it in errors.
func unwrap(ctx context.Context, keeper *secrets.Keeper, wrapped []byte, index, count int) ([]byte, error) {
	if keeper == nil {
		return nil, checkErr(index, count, "%w", errNoKeeper)
	}
	if len(wrapped) == 0 {
		return nil, checkErr(index, count, "empty")
	}
	key, err := keeper.Decrypt(ctx, wrapped)
	if err != nil {
		return nil, &Error{Op: "unwrap", Index: index, Count: count, Code: gcerrors.Code(err), Err: fmt.Errorf("%w (made under another key-encryption key, damaged, or the KMS unreachable or refusing this caller)", err)}
	}
	if len(key) != DataKeySize {
		clear(key)
		return nil, checkErr(index, count, "the KMS unwrapped it to %d bytes, want %d: not a data key that NewDataKey or Wrap made", len(key), DataKeySize)
	}
	return key, nil
}

// NewSealer unwraps each wrapped data key with keeper (one Decrypt at the
// KMS per key, in order, now) and returns [dropboxsign.NewSealer] of the
// data keys: the first seals, every one opens. The Sealer holds the keys
// in memory: sealing and opening tokens makes no KMS call, for the life of
// the process.
//
// It fails if any key does not unwrap, with an [*Error] naming the key's
// position and the KMS's failure ([Error.Class] tells a KMS that is down,
// Temporary, from one that refuses, Misconfigured): call it at start-up,
// so that a KMS problem stops the process before it serves. ctx bounds
// the KMS calls.
func NewSealer(ctx context.Context, keeper *secrets.Keeper, wrapped ...[]byte) (*dropboxsign.Sealer, error) {
	if len(wrapped) == 0 {
		return nil, checkErr(0, 0, "NewSealer needs at least one wrapped data key (make one with NewDataKey)")
	}
	keys := make([][]byte, 0, len(wrapped))
	defer func() {
		for _, k := range keys {
			clear(k)
		}
	}()
	for i, w := range wrapped {
		k, err := unwrap(ctx, keeper, w, i+1, len(wrapped))
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	// The Sealer keeps AES key schedules of its own: the keys are cleared
	// above once it is made.
	return dropboxsign.NewSealer(keys...)
}

// Rewrap returns the data key in wrapped (made under from's key-encryption
// key) wrapped by to's: one Decrypt at from, one Encrypt at to. It is the
// rotation of the key-encryption key, or a move to another KMS: the data
// key is the same (same [dropboxsign.KeyID]), so no token needs sealing
// again; replace the wrapped key in the configuration with the result.
func Rewrap(ctx context.Context, from, to *secrets.Keeper, wrapped []byte) ([]byte, error) {
	key, err := unwrap(ctx, from, wrapped, 0, 0)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	return Wrap(ctx, to, key)
}

// DataKeyID returns the [dropboxsign.KeyID] of the data key in wrapped
// (one Decrypt at the KMS): the ID that sealed tokens carry and that
// [dropboxsign.Census] counts by, so that an operator can tell which
// wrapped key of the configuration a census line is about. The ID reveals
// nothing usable about the key.
func DataKeyID(ctx context.Context, keeper *secrets.Keeper, wrapped []byte) (string, error) {
	key, err := unwrap(ctx, keeper, wrapped, 0, 0)
	if err != nil {
		return "", err
	}
	defer clear(key)
	return dropboxsign.KeyID(key), nil
}

// FormatWrappedKeys returns wrapped keys as [ParseWrappedKeys] reads them:
// standard base64, separated by commas, in the order given (the first
// seals).
func FormatWrappedKeys(wrapped ...[]byte) string {
	fields := make([]string, len(wrapped))
	for i, w := range wrapped {
		fields[i] = base64.StdEncoding.EncodeToString(w)
	}
	return strings.Join(fields, ",")
}

// ParseWrappedKeys reads wrapped data keys as an operator writes them, in
// the format of [dropboxsign.ParseSealKeys] (base64, standard or URL
// alphabet, padded or not, separated by commas, the first seals), but of
// any length: a wrapped key's size depends on the KMS. An error names the
// position of a bad entry, never its text.
func ParseWrappedKeys(list string) ([][]byte, error) {
	if strings.TrimSpace(list) == "" {
		return nil, errors.New("kmsseal: no wrapped data keys in the list (base64, separated by commas, the first seals)")
	}
	fields := strings.Split(list, ",")
	out := make([][]byte, 0, len(fields))
	for i, f := range fields {
		f = strings.TrimRight(strings.TrimSpace(f), "=")
		if f == "" {
			return nil, fmt.Errorf("kmsseal: wrapped data key %d of the list is empty", i+1)
		}
		enc := base64.RawStdEncoding
		if strings.ContainsAny(f, "-_") {
			enc = base64.RawURLEncoding
		}
		w, err := enc.Strict().DecodeString(f)
		if err != nil {
			return nil, fmt.Errorf("kmsseal: wrapped data key %d of the list is not base64", i+1)
		}
		out = append(out, w)
	}
	return out, nil
}
