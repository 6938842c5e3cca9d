package dropboxsign

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// What a Sealer tells about its keys and about stored tokens, for the
// operator: key IDs (never keys), a census of how tokens are sealed, and
// the rollouts that turn encryption on or retire a key one replica at a
// time (docs/operating.md has the runbook).

// KeyID returns the printable ID of an encryption key: the first 8 bytes
// of its SHA-256, in hex (16 characters). A sealed token names the key that
// sealed it by this ID. The ID reveals nothing usable about the key.
func KeyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// KeyIDs returns the IDs of s's keys, the sealing key first; none for a nil
// Sealer or one without keys.
func (s *Sealer) KeyIDs() []string {
	if s == nil {
		return nil
	}
	ids := make([]string, len(s.ids))
	for i, id := range s.ids {
		ids[i] = hex.EncodeToString(id)
	}
	return ids
}

// OpenOnly returns a copy of s that opens every token its keys sealed, and
// tokens in plain JSON, but seals nothing: it writes plain JSON. It is the
// first step of turning encryption on across a running fleet, one replica
// at a time: deploy OpenOnly everywhere (every replica can then read what
// any replica will seal), then the Sealer itself (which seals), replica by
// replica; no replica ever meets a token it cannot open. A plain token it
// opens is not reported as plaintext ([EventPlaintextToken]): plain JSON
// is what it writes; and it does not refuse plaintext, even if s did
// ([Sealer.RefusePlaintext] of it seals again). s itself is unchanged.
func (s *Sealer) OpenOnly() *Sealer {
	if s == nil {
		return nil
	}
	c := *s
	c.openOnly = true
	c.strict = false
	return &c
}

// Retired returns a copy of s that knows ids (as [KeyID] gives them) as
// keys this fleet used and has removed: a token sealed under one of them
// fails to open with a [*MissingKeyError] whose Retired is true, which says
// the key was removed before every token was sealed again, rather than
// that the token was sealed under a key this fleet never had. s itself is
// unchanged.
func (s *Sealer) Retired(ids ...string) *Sealer {
	if s == nil {
		return nil
	}
	c := *s
	c.retired = slices.Clone(s.retired)
	for _, id := range ids {
		// As an operator may copy it: in capitals, with spaces around.
		c.retired = append(c.retired, strings.ToLower(strings.TrimSpace(id)))
	}
	return &c
}

// MissingKeyError is a stored token sealed under a key the Sealer does not
// hold. [Classify] says Misconfigured: an operator must give the replica
// the key (or run the re-seal with it before removing it), or the user
// connects again. It names the key by its ID, never the key.
type MissingKeyError struct {
	KeyID string // the ID of the key that sealed the token
	// Retired: the key is one of those the Sealer was told were removed
	// ([Sealer.Retired]); otherwise, as far as this replica knows, a key
	// this fleet never had (or one not yet given to this replica).
	Retired bool

	noKeys bool // the Sealer has no keys at all (a nil *Sealer)
}

func (e *MissingKeyError) Error() string {
	if e.noKeys {
		return "the stored token is encrypted and no encryption keys are configured here (it is sealed with encryption key " + e.KeyID + "): a replica not yet given the keys while others seal (turn encryption on in two rolling steps, Sealer.OpenOnly first: see docs/replicas.md)"
	}
	if e.Retired {
		return "the stored token is sealed with encryption key " + e.KeyID + ", an older key no longer configured (removed before every token was sealed again: configure it again as a second key, run the re-seal, then remove it)"
	}
	return "the stored token is sealed with encryption key " + e.KeyID + ", which is not configured here and not known as retired: a key this fleet never had (another environment's), a new key not yet deployed to this replica, or an older key removed too early (see docs/operating.md, key rotation)"
}

// Seal is how a stored token is kept, as [Sealer.Inspect] tells it.
type Seal struct {
	// Plain: the token is in plain JSON.
	Plain bool
	// KeyID is the ID of the key that sealed it ("" when plain).
	KeyID string
	// Current: stored as the Sealer now writes (sealed under its first key;
	// plain for a nil or OpenOnly Sealer) and opened by it: a re-seal
	// leaves it alone. Never true with Err.
	Current bool
	// Err is why the Sealer cannot open it (nil when it can): a
	// [*MissingKeyError], [ErrPlaintextToken], a token tampered with or
	// stored under another account, or not a token at all.
	Err error
}

// Inspect tells how blob, stored under account, is kept, and whether s
// opens it, without returning the token. Stores use it to report a census
// (see [SealInspector]).
func (s *Sealer) Inspect(account string, blob []byte) Seal {
	var st Seal
	if bytes.HasPrefix(blob, sealedMagic) {
		if rest := blob[len(sealedMagic):]; len(rest) >= 8 {
			st.KeyID = hex.EncodeToString(rest[:8])
		}
		_, current := s.Sealed(blob)
		st.Current = current && !s.openOnly
	} else {
		st.Plain = true
		st.Current = s == nil || s.openOnly || len(s.aeads) == 0
	}
	if _, err := s.Open(account, blob); err != nil {
		st.Err = err
		st.Current = false // what does not open is not as s writes it
	}
	return st
}

// InspectPlain is [Sealer.Inspect] for a token a store keeps in plain JSON
// by itself (as FileStore does, in a field of its record) rather than as
// the blob Seal made: plain, current for a Sealer that writes plain JSON,
// and refused by one that refuses plaintext.
func (s *Sealer) InspectPlain() Seal {
	st := Seal{Plain: true, Current: s == nil || s.openOnly || len(s.aeads) == 0}
	if s != nil && s.strict {
		st.Err, st.Current = ErrPlaintextToken, false
	}
	return st
}

// ParseSealKeys reads keys as an operator writes them: base64 (standard or
// URL alphabet, padded or not), separated by commas, the first seals; each
// must decode to 32 bytes. An error names the position of a bad key, never
// its text. It is the format of the DROPBOX_SIGN_SEAL_KEYS variable that
// the command line tool reads.
func ParseSealKeys(list string) ([][]byte, error) {
	if strings.TrimSpace(list) == "" {
		return nil, errors.New("dropboxsign: no encryption keys in the list (base64, separated by commas, the first seals)")
	}
	var keys [][]byte
	for i, field := range strings.Split(list, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			return nil, fmt.Errorf("dropboxsign: encryption key %d of the list is empty", i+1)
		}
		k, err := decodeKey(field)
		if err != nil {
			return nil, fmt.Errorf("dropboxsign: encryption key %d of the list is not base64", i+1)
		}
		if len(k) != 32 {
			return nil, fmt.Errorf("dropboxsign: encryption key %d of the list has %d bytes, want 32 (AES-256)", i+1, len(k))
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func decodeKey(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.Strict().DecodeString(s)
	}
	return base64.RawStdEncoding.Strict().DecodeString(s)
}
