package dropboxsign

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// FileStore is a [Store] that keeps each key's token in a JSON file of its
// own in one directory, for the processes of one machine. Files are written
// atomically (a temporary file, fsync, rename, fsync of the directory) with
// mode 0600, in a directory of mode 0700; processes coordinate with advisory
// locks (flock) on a lock file per key, which the kernel releases when a
// process dies. It needs a Unix system and a local file system.
type FileStore struct {
	dir string
}

// NewFileStore returns a FileStore keeping its files in dir, which it creates
// (mode 0700) if needed.
func NewFileStore(dir string) (*FileStore, error) {
	if dir == "" {
		return nil, errors.New("dropboxsign: FileStore needs a directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dropboxsign: FileStore: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil { // also when it existed already
		return nil, fmt.Errorf("dropboxsign: FileStore: %w", err)
	}
	return &FileStore{dir: dir}, nil
}

// fileRecord is what a token file holds.
type fileRecord struct {
	Key     string        `json:"key"`
	Token   *oauth2.Token `json:"token"`
	SavedAt time.Time     `json:"saved_at"`
}

// Path returns the file that holds key's token.
func (f *FileStore) Path(key string) string {
	return filepath.Join(f.dir, escapeKey(key)+".json")
}

// Load returns the token stored under key, or ErrNotFound. A file that
// cannot be read as a token is an error that names it.
func (f *FileStore) Load(_ context.Context, key string) (*oauth2.Token, error) {
	rec, err := f.read(key)
	if err != nil {
		return nil, err
	}
	return rec.Token, nil
}

// SavedAt returns when key's token was last saved.
func (f *FileStore) SavedAt(key string) (time.Time, error) {
	rec, err := f.read(key)
	if err != nil {
		return time.Time{}, err
	}
	return rec.SavedAt, nil
}

func (f *FileStore) read(key string) (*fileRecord, error) {
	path := f.Path(key)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("dropboxsign: FileStore: %w", err)
	}
	var rec fileRecord
	if err := json.Unmarshal(b, &rec); err != nil || rec.Token == nil || rec.Token.AccessToken == "" && rec.Token.RefreshToken == "" {
		return nil, fmt.Errorf("dropboxsign: FileStore: %s is not a token file (corrupt or foreign): remove it or log in again", path)
	}
	return &rec, nil
}

// Save stores t under key if the stored token is still prev (see [Store]).
// It holds key's data lock for the comparison and the write.
func (f *FileStore) Save(ctx context.Context, key string, prev, t *oauth2.Token) error {
	if t == nil {
		return errors.New("dropboxsign: FileStore: nil token")
	}
	unlock, err := lockFile(ctx, filepath.Join(f.dir, escapeKey(key)+".lock"))
	if err != nil {
		return fmt.Errorf("dropboxsign: FileStore: %w", err)
	}
	defer unlock()
	cur, err := f.Load(ctx, key)
	switch {
	case errors.Is(err, ErrNotFound):
		if prev != nil {
			return ErrConflict
		}
	case err != nil:
		return err
	case prev == nil || cur.AccessToken != prev.AccessToken || cur.RefreshToken != prev.RefreshToken:
		return ErrConflict
	}
	b, err := json.MarshalIndent(fileRecord{Key: key, Token: t, SavedAt: time.Now().UTC()}, "", "  ")
	if err != nil {
		return fmt.Errorf("dropboxsign: FileStore: %w", err)
	}
	return writeFileAtomic(f.Path(key), b)
}

// Lock takes key's refresh lock (see [Store]): an flock on a file of its own,
// held by this process until unlock, released by the kernel if it dies.
func (f *FileStore) Lock(ctx context.Context, key string) (func(), error) {
	unlock, err := lockFile(ctx, filepath.Join(f.dir, escapeKey(key)+".refresh.lock"))
	if err != nil {
		return nil, fmt.Errorf("dropboxsign: FileStore: %w", err)
	}
	return unlock, nil
}

// Keys returns the keys that have a token file, sorted; the key is read
// from each file (a long key's file name is a hash of it).
func (f *FileStore) Keys() ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(f.dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		var rec fileRecord
		if json.Unmarshal(b, &rec) == nil && f.Path(rec.Key) == m {
			keys = append(keys, rec.Key)
		} else if key, ok := unescapeKey(strings.TrimSuffix(filepath.Base(m), ".json")); ok {
			keys = append(keys, key) // unreadable: listed, so that it can be seen and fixed
		}
	}
	sort.Strings(keys)
	return keys, nil
}

// writeFileAtomic replaces path with data so that readers see the old file
// or the new one, never a part, even across a crash.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("dropboxsign: FileStore: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			err = fmt.Errorf("dropboxsign: FileStore: writing %s: %w", path, err)
		}
	}()
	if err = tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// escapeKey turns any key into a file name: letters, digits, '-' and '_'
// stand for themselves, every other byte is %XX (so no '/', no "..").
func escapeKey(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	if b.Len() == 0 {
		return "%" // the empty key
	}
	if b.Len() > maxNameLen {
		// File names are limited (255 bytes on most systems): a long key's
		// file is named after its hash; the file records the key itself.
		sum := sha256.Sum256([]byte(key))
		return "%long-" + hex.EncodeToString(sum[:])
	}
	return b.String()
}

const maxNameLen = 200

func unescapeKey(name string) (string, bool) {
	if name == "%" {
		return "", true
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		if name[i] != '%' {
			b.WriteByte(name[i])
			continue
		}
		var c byte
		if i+2 >= len(name) {
			return "", false
		}
		if _, err := fmt.Sscanf(name[i+1:i+3], "%02X", &c); err != nil {
			return "", false
		}
		b.WriteByte(c)
		i += 2
	}
	return b.String(), true
}
