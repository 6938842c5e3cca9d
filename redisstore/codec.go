package redisstore

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/oauth2"
)

// A stored blob is the token as JSON, or, sealed, "enc1" + key id (8 bytes)
// + nonce + AES-256-GCM ciphertext of that JSON, with the Redis key as
// additional data: a blob copied under another account's key does not open.
var sealedMagic = []byte("enc1")

type record struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Expiry       string `json:"expiry,omitempty"` // RFC 3339 with nanoseconds
	ExpiresIn    int64  `json:"expires_in,omitempty"`
}

func (s *Store) encode(redisKey string, t *oauth2.Token) ([]byte, error) {
	rec := record{AccessToken: t.AccessToken, TokenType: t.TokenType, RefreshToken: t.RefreshToken, ExpiresIn: t.ExpiresIn}
	if !t.Expiry.IsZero() {
		rec.Expiry = t.Expiry.UTC().Format("2006-01-02T15:04:05.999999999Z07:00")
	}
	plain, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("redisstore: encoding token: %w", err)
	}
	if s.sealer == nil {
		return plain, nil
	}
	return s.sealer.seal(redisKey, plain)
}

func (s *Store) decode(redisKey string, blob []byte) (*oauth2.Token, error) {
	plain := blob
	if bytes.HasPrefix(blob, sealedMagic) {
		if s.sealer == nil {
			return nil, errors.New("the stored token is encrypted and no EncryptionKeys are configured")
		}
		var err error
		if plain, err = s.sealer.open(redisKey, blob); err != nil {
			return nil, err
		}
	} // else plain JSON, perhaps stored before encryption was turned on: sealed at its next save
	var rec record
	if err := json.Unmarshal(plain, &rec); err != nil || rec.AccessToken == "" && rec.RefreshToken == "" {
		return nil, errors.New("the stored value is not a token (corrupt or foreign)")
	}
	t := &oauth2.Token{AccessToken: rec.AccessToken, TokenType: rec.TokenType, RefreshToken: rec.RefreshToken, ExpiresIn: rec.ExpiresIn}
	if rec.Expiry != "" {
		if err := t.Expiry.UnmarshalText([]byte(rec.Expiry)); err != nil {
			return nil, errors.New("the stored token has an unreadable expiry")
		}
	}
	return t, nil
}

type sealer struct {
	ids   [][]byte // key ids: the first 8 bytes of SHA-256 of each key
	aeads []cipher.AEAD
}

func newSealer(keys [][]byte) (*sealer, error) {
	s := &sealer{}
	for i, k := range keys {
		if len(k) != 32 {
			return nil, fmt.Errorf("redisstore: encryption key %d has %d bytes, want 32", i, len(k))
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("redisstore: encryption key %d: %w", i, err)
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

func (s *sealer) seal(redisKey string, plain []byte) ([]byte, error) {
	aead := s.aeads[0]
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := append(append(append([]byte{}, sealedMagic...), s.ids[0]...), nonce...)
	return aead.Seal(out, nonce, plain, []byte(redisKey)), nil
}

func (s *sealer) open(redisKey string, blob []byte) ([]byte, error) {
	rest := blob[len(sealedMagic):]
	if len(rest) < 8 {
		return nil, errors.New("the stored token is sealed but truncated")
	}
	id, rest := rest[:8], rest[8:]
	for i, known := range s.ids {
		if !bytes.Equal(id, known) {
			continue
		}
		aead := s.aeads[i]
		if len(rest) < aead.NonceSize() {
			return nil, errors.New("the stored token is sealed but truncated")
		}
		plain, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], []byte(redisKey))
		if err != nil {
			return nil, errors.New("the stored token does not open: tampered with, or stored under another key")
		}
		return plain, nil
	}
	return nil, errors.New("the stored token was sealed with an encryption key that is not configured (rotated out too early?)")
}
