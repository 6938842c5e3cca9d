package dropboxsign

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

var _ SealInspector = (*FileStore)(nil)

// InspectSeals tells how the tokens of up to limit keys that sort after
// after (bytewise) are stored, in key order (see [SealInspector]): a file
// that holds a token in plain JSON is Plain, one that holds it sealed is
// told by the store's Sealer ([Sealer.Inspect]). Marks are left out. A file
// named like a key's that is not that key's token (corrupt, foreign,
// copied from another key's, a symbolic link) is listed with Seal.Err
// saying what is wrong with it, as Load would; so is a sealed token the
// Sealer cannot open (a [*MissingKeyError] for a key it does not hold).
// As [FileStore.Keys], a long key's file that cannot be read is not
// listed: its name, a hash, does not give the key back. It reads the
// directory's names at each call, and then the files of the page only
// (and those of long keys, whose names do not give their keys).
func (f *FileStore) InspectSeals(ctx context.Context, after string, limit int) ([]StoredSeal, error) {
	if limit < 1 {
		return nil, fmt.Errorf("dropboxsign: FileStore: InspectSeals: limit %d, want at least 1", limit)
	}
	root, err := f.openDir()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	d, err := root.Open(".")
	if err != nil {
		return nil, fmt.Errorf("dropboxsign: FileStore: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("dropboxsign: FileStore: listing %s: %w", f.dir, err)
	}
	// The keys after after, from the file names: the escaping does not
	// keep the keys' order, so every name is looked at.
	var keys []string
	for _, name := range names {
		base, ok := strings.CutSuffix(name, ".json")
		if !ok {
			continue
		}
		if strings.HasPrefix(base, "%long-") {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			rec, err := f.readFile(root, name)
			if err == nil && fileName(rec.Key) == name && rec.Key > after {
				keys = append(keys, rec.Key)
			}
			continue
		}
		if key, ok := unescapeKey(base); ok && escapeKey(key) == base && key > after {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	out := []StoredSeal{}
	for _, key := range keys {
		if len(out) == limit {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		seal, ok := f.inspectIn(root, key)
		if ok {
			out = append(out, StoredSeal{Key: key, Seal: seal})
		}
	}
	return out, nil
}

// inspectIn tells how key's file in root holds its token; ok is false if
// it holds none (a mark, or no file any more).
func (f *FileStore) inspectIn(root *os.Root, key string) (seal Seal, ok bool) {
	name := fileName(key)
	rec, err := f.readFile(root, name)
	switch {
	case errors.Is(err, ErrNotFound):
		return Seal{}, false // removed since the directory was read
	case err != nil:
		return Seal{Err: err}, true
	case rec.Key != key:
		// Load's error for it, from the same check.
		if _, err = f.readIn(root, key); err == nil {
			err = fmt.Errorf("dropboxsign: FileStore: %s changed while it was inspected", f.path(name))
		}
		return Seal{Err: err}, true
	case rec.DisconnectedAt != nil || rec.RefusedAt != nil:
		return Seal{}, false
	case rec.Sealed != nil:
		seal = f.sealer.Inspect(key, rec.Sealed)
		if seal.Err != nil {
			seal.Err = fmt.Errorf("dropboxsign: FileStore: %s: %w", f.path(name), seal.Err)
		}
		return seal, true
	case rec.Token != nil && (rec.Token.AccessToken != "" || rec.Token.RefreshToken != ""):
		seal = f.sealer.InspectPlain()
		if seal.Err != nil {
			seal.Err = fmt.Errorf("dropboxsign: FileStore: %s: %w", f.path(name), seal.Err)
		}
		return seal, true
	}
	return Seal{Err: fmt.Errorf("dropboxsign: FileStore: %s is not a token file (corrupt or foreign): remove it or log in again", f.path(name))}, true
}

// SampleSeals is InspectSeals from the start (see [SealSampler]): it reads
// the directory's names and at most n files.
func (f *FileStore) SampleSeals(ctx context.Context, n int) ([]StoredSeal, error) {
	return f.InspectSeals(ctx, "", n)
}
