package kmsseal_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"gocloud.dev/gcerrors"
	"gocloud.dev/secrets"
	"gocloud.dev/secrets/driver"
	"gocloud.dev/secrets/localsecrets"
	"golang.org/x/oauth2"
)

// countingKMS is a KMS for tests: gocloud's local keeper (a real
// secretbox KEK) behind a driver that counts the calls, and that can be
// made to fail as a KMS that is down or refuses.
type countingKMS struct {
	inner    *secrets.Keeper
	kek      [32]byte
	encrypts atomic.Int64
	decrypts atomic.Int64
	fail     atomic.Value // error to return from every call, or nil
}

// errKMSDown and errKMSDenied are the faults countingKMS can inject; its
// ErrorCode gives them the codes real drivers give.
var (
	errKMSDown   = errors.New("dial tcp 10.0.0.1:443: connect: connection refused")
	errKMSDenied = errors.New("AccessDeniedException: not authorized to perform kms:Decrypt")
)

func newKMS(t *testing.T) (*countingKMS, *secrets.Keeper) {
	t.Helper()
	kek, err := localsecrets.NewRandomKey()
	if err != nil {
		t.Fatal(err)
	}
	c := &countingKMS{inner: localsecrets.NewKeeper(kek), kek: kek}
	k := secrets.NewKeeper(c)
	t.Cleanup(func() { k.Close() })
	return c, k
}

func (c *countingKMS) failWith(err error) { c.fail.Store(&err) }

func (c *countingKMS) fault() error {
	if p, _ := c.fail.Load().(*error); p != nil {
		return *p
	}
	return nil
}

func (c *countingKMS) Encrypt(ctx context.Context, plain []byte) ([]byte, error) {
	c.encrypts.Add(1)
	if err := c.fault(); err != nil {
		return nil, err
	}
	return c.inner.Encrypt(ctx, plain)
}

func (c *countingKMS) Decrypt(ctx context.Context, ct []byte) ([]byte, error) {
	c.decrypts.Add(1)
	if err := c.fault(); err != nil {
		return nil, err
	}
	return c.inner.Decrypt(ctx, ct)
}

func (c *countingKMS) Close() error                  { return c.inner.Close() }
func (c *countingKMS) ErrorAs(err error, i any) bool { return false }
func (c *countingKMS) ErrorCode(err error) gcerrors.ErrorCode {
	switch {
	case errors.Is(err, errKMSDown):
		return gcerrors.Unknown
	case errors.Is(err, errKMSDenied):
		return gcerrors.PermissionDenied
	}
	return gcerrors.Code(err)
}

func (c *countingKMS) calls() (enc, dec int64) { return c.encrypts.Load(), c.decrypts.Load() }

func (c *countingKMS) reset() { c.encrypts.Store(0); c.decrypts.Store(0) }

var _ driver.Keeper = (*countingKMS)(nil)

// secretForms lists the texts under which a secret could leak: raw,
// base64 (both alphabets, padded or not) and hex.
func secretForms(secrets ...[]byte) []string {
	var forms []string
	for _, s := range secrets {
		forms = append(forms,
			base64.StdEncoding.EncodeToString(s), base64.RawStdEncoding.EncodeToString(s),
			base64.URLEncoding.EncodeToString(s), base64.RawURLEncoding.EncodeToString(s),
			hex.EncodeToString(s), string(s))
	}
	return forms
}

// checkNoSecret fails t if text holds any of the secrets, in any form.
func checkNoSecret(t *testing.T, what, text string, secrets ...[]byte) {
	t.Helper()
	for _, f := range secretForms(secrets...) {
		if len(f) >= 8 && strings.Contains(text, f) {
			t.Errorf("%s holds a secret: %q", what, text)
			return
		}
	}
}

// logBuffer is a slog handler's output, safe for concurrent writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func randomKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

func expired(tok *oauth2.Token) *oauth2.Token {
	c := *tok
	c.Expiry = time.Now().Add(-time.Minute)
	return &c
}

func fileStore(t *testing.T, dir string, s *dropboxsign.Sealer) *dropboxsign.FileStore {
	t.Helper()
	fs, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(s))
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func census(t *testing.T, store dropboxsign.SealInspector) dropboxsign.CensusReport {
	t.Helper()
	r, err := dropboxsign.Census(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
