package dropboxsign

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/oauth2"
)

// A Sealer turns tokens into what a store keeps, and back: JSON, sealed
// with AES-256-GCM when it has keys. Every store of this repository uses
// one (FileStore with [WithSealer], redisstore and pgstore with their
// options), and so may yours.
//
// It holds one or more 32-byte keys: the first seals, every one opens, and
// each sealed token names the key that sealed it (by a hash), so that keys
// can be rotated across a running fleet: deploy [old, new] everywhere (all
// can open what new will seal), then [new, old] (new seals), and drop old
// once every token has been saved again (each refresh saves; a token
// nobody refreshes keeps its old seal). A sealed token is bound to its
// account key: copied under another account, it does not open.
//
// A token stored in plain JSON (before encryption was turned on) still
// opens, and is sealed at its next save (each refresh saves; to seal one
// nobody refreshes, Load it and Save it over itself: Save(ctx, key, tok,
// tok)). A source that loads such a token from a store reports it, once
// per account's source (an [Accounts] that lets an idle account go and
// loads it again reports it again): an [EventPlaintextToken], logged at
// Warn by [WithLogger], counted by the oteldropboxsign module. Those events
// are how an operator finds the tokens still in plain JSON, along with a
// scan of the store (docs/operating.md says how, for each store). Once no
// replica runs without keys and no token is left in plain JSON, turn on
// [Sealer.RefusePlaintext]: from then on a plain token, planted by someone
// who can write to the store, does not open.
//
// A nil *Sealer is valid: it writes plain JSON and refuses to open sealed
// tokens. A zero Sealer (not made by NewSealer) has no keys: it seals
// nothing, and opens nothing sealed, with an error. A Sealer is safe for
// concurrent use.
//
// Sealing protects the tokens' secrecy, not the store's integrity against
// someone who can write to it: unless it refuses plaintext, a Sealer opens
// plain JSON (for the migration above), so such a writer can plant a plain
// token of their own.
type Sealer struct {
	ids      [][]byte // the first 8 bytes of SHA-256 of each key
	aeads    []cipher.AEAD
	strict   bool     // refuse tokens in plain JSON: see RefusePlaintext
	openOnly bool     // write plain JSON: see OpenOnly
	retired  []string // IDs of keys removed from this fleet: see Retired
}

// ErrPlaintextToken is what a Sealer that refuses plaintext
// ([Sealer.RefusePlaintext]) returns for a token in plain JSON; stores
// wrap it, naming themselves and the key. The token is not used. A new login
// ([Accounts.Login]) replaces the record ([Store.Replace]); an operator who
// finds many should ask
// why: a replica without keys still writing plain JSON, strict mode turned
// on before every token was sealed, or someone writing to the store.
var ErrPlaintextToken = errors.New("dropboxsign: the stored token is in plain JSON, which this Sealer refuses (RefusePlaintext): stored before encryption was turned on, written by a replica without keys, or planted; a new login replaces it")

// RefusePlaintext returns a copy of s, with the same keys, that refuses to
// open a token stored in plain JSON: its Open (and a FileStore's Load)
// fails with an error that wraps [ErrPlaintextToken]. Give it to the stores
// once a fleet is fully sealed (see [Sealer]). s itself is unchanged.
//
// Refusing plaintext needs keys: on a nil *Sealer (plain JSON) it returns a
// Sealer without keys, which seals nothing and opens nothing. On an
// [Sealer.OpenOnly] Sealer, which writes plain JSON, it returns one that
// seals again: refusing plain JSON is the last step of turning encryption
// on, and a Sealer that refused what it writes could not read its own
// tokens.
func (s *Sealer) RefusePlaintext() *Sealer {
	if s == nil {
		return &Sealer{strict: true}
	}
	c := *s
	c.strict = true
	c.openOnly = false
	return &c
}

// NewSealer returns a Sealer with keys, the first of which seals; each
// must be 32 bytes (AES-256), from a secret manager or crypto/rand.
func NewSealer(keys ...[]byte) (*Sealer, error) {
	if len(keys) == 0 {
		return nil, errors.New("dropboxsign: NewSealer needs at least one key")
	}
	s := &Sealer{}
	for i, k := range keys {
		if len(k) != 32 {
			return nil, fmt.Errorf("dropboxsign: encryption key %d has %d bytes, want 32 (AES-256)", i, len(k))
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("dropboxsign: encryption key %d: %w", i, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(k)
		s.ids = append(s.ids, sum[:8])
		s.aeads = append(s.aeads, aead)
	}
	return s, nil
}

// sealedMagic starts a sealed token: then the key's id (8 bytes), the
// nonce (12), and the ciphertext of the token's JSON, with the account key
// as additional data.
var sealedMagic = []byte("dbs1")

// storedToken is a token's JSON as stores keep it: the fields that make
// the whole token, expiry to the nanosecond.
type storedToken struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Expiry       string `json:"expiry,omitempty"`
	ExpiresIn    int64  `json:"expires_in,omitempty"`
}

// Seal returns t as a store keeps it under account: sealed JSON, or plain
// JSON from a nil Sealer.
func (s *Sealer) Seal(account string, t *oauth2.Token) ([]byte, error) {
	if t == nil {
		return nil, errors.New("dropboxsign: Seal: nil token")
	}
	rec := storedToken{AccessToken: t.AccessToken, TokenType: t.TokenType, RefreshToken: t.RefreshToken, ExpiresIn: t.ExpiresIn}
	if !t.Expiry.IsZero() {
		rec.Expiry = t.Expiry.UTC().Format(time.RFC3339Nano)
	}
	plain, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("dropboxsign: encoding a token: %w", err)
	}
	if s == nil || s.openOnly {
		return plain, nil
	}
	if len(s.aeads) == 0 {
		return nil, errNoKeys
	}
	aead := s.aeads[0]
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce) // never fails (crypto/rand)
	out := append(append(append([]byte{}, sealedMagic...), s.ids[0]...), nonce...)
	return aead.Seal(out, nonce, plain, additionalData(account)), nil
}

// Open returns the token in blob, which Seal made for account (or which
// holds a token in plain JSON, unless s refuses plaintext). The error says
// what is wrong, never what the blob holds.
func (s *Sealer) Open(account string, blob []byte) (*oauth2.Token, error) {
	plain := blob
	sealed := bytes.HasPrefix(blob, sealedMagic)
	if sealed {
		if s == nil {
			rest := blob[len(sealedMagic):]
			if len(rest) < 8 {
				return nil, errors.New("the stored token is encrypted and no encryption keys are configured")
			}
			// An operator's error as much as a key left out: Misconfigured,
			// and named, so that the rollout's mistake is found at once.
			return nil, &MissingKeyError{KeyID: hex.EncodeToString(rest[:8]), noKeys: true}
		}
		var err error
		if plain, err = s.open(account, blob[len(sealedMagic):]); err != nil {
			return nil, err
		}
	}
	var rec storedToken
	if err := json.Unmarshal(plain, &rec); err != nil || rec.AccessToken == "" && rec.RefreshToken == "" {
		return nil, errors.New("the stored value is not a token (corrupt or foreign)")
	}
	t := &oauth2.Token{AccessToken: rec.AccessToken, TokenType: rec.TokenType, RefreshToken: rec.RefreshToken, ExpiresIn: rec.ExpiresIn}
	if rec.Expiry != "" {
		if err := t.Expiry.UnmarshalText([]byte(rec.Expiry)); err != nil {
			return nil, errors.New("the stored token has an unreadable expiry")
		}
	}
	if !sealed {
		return s.openPlain(t)
	}
	return t, nil
}

// openPlain passes on t, a token a store read in plain JSON (through Open,
// or by itself, as FileStore does): refused by a Sealer that refuses
// plaintext; remembered as plaintext for the source that loads it (see
// notePlaintext) when read by a Sealer with keys, which seals every token,
// so that t was not written by it.
func (s *Sealer) openPlain(t *oauth2.Token) (*oauth2.Token, error) {
	switch {
	case s == nil:
	case s.strict:
		return nil, ErrPlaintextToken
	case len(s.aeads) > 0 && !s.openOnly:
		markPlaintext(t)
	}
	return t, nil
}

// Sealed reports whether blob is a sealed token, and whether it is sealed
// with s's first key (false: it should be sealed again at its next save).
func (s *Sealer) Sealed(blob []byte) (sealed, current bool) {
	sealed = bytes.HasPrefix(blob, sealedMagic)
	return sealed, sealed && s != nil && len(s.ids) > 0 && len(blob) >= len(sealedMagic)+8 && bytes.Equal(blob[len(sealedMagic):len(sealedMagic)+8], s.ids[0])
}

func (s *Sealer) open(account string, rest []byte) ([]byte, error) {
	if len(s.ids) == 0 {
		return nil, errNoKeys
	}
	if len(rest) < 8 {
		return nil, errors.New("the stored token is sealed but truncated")
	}
	id, rest := rest[:8], rest[8:]
	for i, known := range s.ids {
		if !bytes.Equal(id, known) {
			continue
		}
		aead := s.aeads[i]
		if len(rest) < aead.NonceSize()+aead.Overhead() {
			return nil, errors.New("the stored token is sealed but truncated")
		}
		plain, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], additionalData(account))
		if err != nil {
			return nil, errors.New("the stored token does not open: tampered with, or stored under another account")
		}
		return plain, nil
	}
	return nil, &MissingKeyError{KeyID: hex.EncodeToString(id), Retired: slices.Contains(s.retired, hex.EncodeToString(id))}
}

// errNoKeys is a Sealer's error when it was not made by NewSealer.
var errNoKeys = errors.New("dropboxsign: a Sealer without keys (make one with NewSealer; a nil *Sealer writes plain JSON)")

// additionalData binds a sealed token to its account.
func additionalData(account string) []byte {
	return append([]byte("dropboxsign token\x00"), account...)
}
