package dropboxsign

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// FileStore is a [Store] that keeps each key's token in a JSON file of its
// own in one directory, for the processes of one machine. A key's file holds
// its token (in plain JSON, or sealed: see [WithSealer]), or a mark: a
// refusal mark or a disconnection mark, which hold the key and a time and
// nothing of the grant. Files are written atomically (a temporary file,
// fsync, rename, fsync of the directory) with mode 0600; processes
// coordinate with advisory locks (flock) on a lock file per key, which the
// kernel releases when a process dies.
//
// Changes reach the other processes through a journal in the same
// directory (named %changes, which no key's file can be): Disconnect and
// Replace append the key to it once the key's file is durable, before they
// return. [FileStore.Watch] checks it with one stat every 50 ms (the cost,
// per watching process), so that a change reaches every process of the
// machine within about 50 ms, and reads it from where it left off. The
// journal is bounded: past 256 KiB a writer moves it aside (%changes.1) and
// starts a new one; a watcher that finds a generation it could not read
// reports Change{All: true}. It is not fsync'd: only running processes read
// it, and after a crash of the machine every watcher starts anew.
//
// [FileStore.Forget] removes what the store kept of a key: its file, its
// lock files (when no process holds them) and, if the journal names the
// key, the journal (watchers then report All once).
//
// What it requires, and why:
//
//   - A Unix system and a local file system: flock on a network file system
//     may not exclude another machine's processes, or anyone at all.
//   - A directory owned by the process's effective user and not writable by
//     its group or others, who could otherwise replace token files. One
//     readable by others (0755) is accepted, as token files are 0600, but
//     the file names reveal the keys (account names).
//   - Token and lock files that are regular files, not symbolic links: a
//     read that follows a link and a rename that replaces it would act on
//     different files, so links are refused, never followed. Token files
//     are small; one over 1 MiB is refused.
//   - Each file holds the token of the key it is named after (it records
//     the key): a file copied or renamed from another key's is refused.
//
// A symlinked directory is resolved once, by [NewFileStore]; the store then
// works in the real directory. Re-pointing the link later affects only
// stores opened afterwards. A directory that is moved, removed or replaced
// after NewFileStore, or made writable by others, is an error on every call
// from then on: open a new store (restart) to use the new one.
//
// FileStore is a [Lister] and a [Watcher].
type FileStore struct {
	dir    string      // the real directory, symlinks resolved
	info   os.FileInfo // its identity when opened
	sealer *Sealer     // nil: tokens in plain JSON
}

var (
	_ Lister  = (*FileStore)(nil)
	_ Watcher = (*FileStore)(nil)
)

// A FileStoreOption configures a [FileStore].
type FileStoreOption func(*FileStore)

// WithSealer makes the store seal tokens at rest with s (see [Sealer]):
// then a file shows the token to nobody without the key, not to a backup,
// an operator or another program of the same user. Files written before
// in plain JSON stay readable (unless s refuses plaintext: see
// [Sealer.RefusePlaintext]), are reported by the source that loads them
// ([EventPlaintextToken]), and are sealed at their next save.
func WithSealer(s *Sealer) FileStoreOption {
	return func(f *FileStore) { f.sealer = s }
}

// maxFileSize bounds what a token file may hold: a token is a few KiB.
const maxFileSize = 1 << 20

// NewFileStore returns a FileStore keeping its files in dir. Missing
// directories are created with mode 0700; an existing one is left as it is,
// and refused if it is unsafe (see [FileStore]), with an error that says
// how to fix it. Symbolic links in dir are resolved here, once.
func NewFileStore(dir string, opts ...FileStoreOption) (*FileStore, error) {
	if dir == "" {
		return nil, errors.New("dropboxsign: FileStore needs a directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("dropboxsign: FileStore: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil { // mode only of those it creates
		return nil, fmt.Errorf("dropboxsign: FileStore: creating the token directory: %w", err)
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("dropboxsign: FileStore: resolving the token directory: %w", err)
	}
	info, err := os.Stat(resolved)
	if err != nil {
		return nil, fmt.Errorf("dropboxsign: FileStore: %w", err)
	}
	f := &FileStore{dir: resolved, info: info}
	for _, opt := range opts {
		if opt != nil {
			opt(f)
		}
	}
	if err := f.checkDir(info); err != nil {
		if resolved != abs {
			err = fmt.Errorf("%w (the real directory of %s)", err, abs)
		}
		return nil, err
	}
	return f, nil
}

// checkDir refuses a token directory that others could tamper with.
func (f *FileStore) checkDir(info os.FileInfo) error {
	if !info.IsDir() {
		return fmt.Errorf("dropboxsign: FileStore: %s is not a directory: choose a directory for the token files", f.dir)
	}
	if err := checkOwner(f.dir, info); err != nil {
		return err
	}
	if info.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("dropboxsign: FileStore: token directory %s is writable by its group or others (mode %v), who could replace token files: run 'chmod 700 %s', or choose a directory of your own",
			f.dir, info.Mode().Perm(), f.dir)
	}
	return nil
}

// openDir opens the store's directory for one call, so that every name the
// call uses is resolved in the same directory, and checks it is still the
// one NewFileStore opened and still safe.
func (f *FileStore) openDir() (*os.Root, error) {
	root, err := os.OpenRoot(f.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("dropboxsign: FileStore: token directory %s was removed or moved since the store was opened: restart to use the current one", f.dir)
	}
	if err != nil {
		return nil, fmt.Errorf("dropboxsign: FileStore: %w", err)
	}
	info, err := root.Stat(".")
	if err == nil && !os.SameFile(info, f.info) {
		err = fmt.Errorf("dropboxsign: FileStore: token directory %s was replaced since the store was opened: restart to use the current one", f.dir)
	} else if err == nil {
		err = f.checkDir(info)
	}
	if err != nil {
		root.Close()
		return nil, err
	}
	return root, nil
}

// fileRecord is what a token file holds: a token, a refusal mark, or a
// disconnection mark. Records written before disconnection marks existed
// read as they did.
type fileRecord struct {
	Key       string        `json:"key"`
	Token     *oauth2.Token `json:"token,omitempty"`      // in plain JSON
	Sealed    []byte        `json:"sealed,omitempty"`     // or sealed (see WithSealer)
	RefusedAt *time.Time    `json:"refused_at,omitempty"` // the grant was refused: no token
	// DisconnectedAt: the app disconnected the key (Disconnect): no token,
	// and whatever else the file holds is ignored.
	DisconnectedAt *time.Time `json:"disconnected_at,omitempty"`
	SavedAt        time.Time  `json:"saved_at"`
}

// Path returns the file that holds key's token, in the real directory.
func (f *FileStore) Path(key string) string {
	return filepath.Join(f.dir, fileName(key))
}

func fileName(key string) string { return escapeKey(key) + ".json" }

// Load returns the token stored under key, ErrNotFound, a *RefusedError
// for a key marked refused, or a *DisconnectedError for a key marked
// disconnected. A file that cannot be read as key's token or mark is an
// error that names it.
func (f *FileStore) Load(_ context.Context, key string) (*oauth2.Token, error) {
	rec, err := f.read(key)
	if err != nil {
		return nil, err
	}
	if rec.DisconnectedAt != nil {
		return nil, &DisconnectedError{Key: key, Since: *rec.DisconnectedAt}
	}
	if rec.RefusedAt != nil {
		return nil, &RefusedError{Key: key, Since: *rec.RefusedAt}
	}
	return rec.Token, nil
}

// SavedAt returns when key's file was last written (its token, or mark).
func (f *FileStore) SavedAt(key string) (time.Time, error) {
	rec, err := f.read(key)
	if err != nil {
		return time.Time{}, err
	}
	return rec.SavedAt, nil
}

func (f *FileStore) read(key string) (*fileRecord, error) {
	root, err := f.openDir()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return f.readIn(root, key)
}

// readIn reads key's token file in root, refusing a file that is not
// key's token.
func (f *FileStore) readIn(root *os.Root, key string) (*fileRecord, error) {
	name := fileName(key)
	rec, err := f.readFile(root, name)
	if err != nil {
		return nil, err
	}
	if rec.Key != key {
		return nil, fmt.Errorf("dropboxsign: FileStore: %s holds the token of another key, whose file is %s (copied or renamed?): move it back, or remove it and log in again for this key",
			f.path(name), fileName(rec.Key))
	}
	if rec.DisconnectedAt != nil {
		// A mark: nothing of a grant is used, whatever else is there.
		rec.Token, rec.Sealed, rec.RefusedAt = nil, nil, nil
		return rec, nil
	}
	switch {
	case rec.Sealed != nil:
		if rec.Token, err = f.sealer.Open(key, rec.Sealed); err != nil {
			return nil, fmt.Errorf("dropboxsign: FileStore: %s: %w", f.path(name), err)
		}
	case rec.Token != nil:
		// Plain JSON: refused, or noted, as the Sealer's Open would.
		if rec.Token, err = f.sealer.openPlain(rec.Token); err != nil {
			return nil, fmt.Errorf("dropboxsign: FileStore: %s: %w", f.path(name), err)
		}
	}
	if (rec.Token == nil || rec.Token.AccessToken == "" && rec.Token.RefreshToken == "") && rec.RefusedAt == nil {
		return nil, fmt.Errorf("dropboxsign: FileStore: %s is not a token file (corrupt or foreign): remove it or log in again", f.path(name))
	}
	return rec, nil
}

// readFile reads and decodes the token file name; ErrNotFound if there is
// none.
func (f *FileStore) readFile(root *os.Root, name string) (*fileRecord, error) {
	file, err := f.open(root, name, os.O_RDONLY)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	defer file.Close()
	b, err := io.ReadAll(io.LimitReader(file, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("dropboxsign: FileStore: reading %s: %w", f.path(name), err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("dropboxsign: FileStore: %s is larger than 1 MiB, too large for a token file: remove it or log in again", f.path(name))
	}
	var rec fileRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("dropboxsign: FileStore: %s is not a token file (corrupt or foreign): remove it or log in again", f.path(name))
	}
	return &rec, nil
}

// open opens name in root if it is a regular file, never following a
// symbolic link, never blocking on a FIFO. With os.O_CREATE it creates a
// missing file (mode 0600). A file replaced between the check and the open
// (another process's save renames a new file into place: every save does)
// is opened again, a few times, before that counts as an error.
func (f *FileStore) open(root *os.Root, name string, flag int) (*os.File, error) {
	var err error
	for range 4 {
		var file *os.File
		if file, err = f.openOnce(root, name, flag); !errors.Is(err, errReplacedWhileOpening) {
			return file, err
		}
	}
	return nil, err
}

var errReplacedWhileOpening = errors.New("changed while it was being opened")

func (f *FileStore) openOnce(root *os.Root, name string, flag int) (*os.File, error) {
	fix := "remove it and log in again" // a token file
	switch {
	case strings.HasSuffix(name, ".lock"):
		fix = "remove it (the store creates its lock files itself)"
	case strings.HasPrefix(name, journalName):
		fix = "remove it (the store creates its journal of changes itself)"
	}
	before, err := root.Lstat(name)
	switch {
	case err == nil && before.Mode()&os.ModeSymlink != 0:
		return nil, fmt.Errorf("dropboxsign: FileStore: %s is a symbolic link, which the store never follows (a write would replace the link, not its target): %s, or put the file itself there", f.path(name), fix)
	case err == nil && !before.Mode().IsRegular():
		return nil, fmt.Errorf("dropboxsign: FileStore: %s is not a regular file but %s: %s", f.path(name), kind(before.Mode()), fix)
	case errors.Is(err, os.ErrNotExist) && flag&os.O_CREATE != 0:
		before = nil
	case err != nil:
		return nil, fmt.Errorf("dropboxsign: FileStore: %w", err)
	}
	file, err := root.OpenFile(name, flag|openNonBlock, 0o600)
	if err != nil {
		return nil, fmt.Errorf("dropboxsign: FileStore: %w", err)
	}
	info, err := file.Stat()
	if err == nil && before == nil {
		before, err = root.Lstat(name) // created just now: is it what we opened?
	}
	if err != nil || !info.Mode().IsRegular() || !os.SameFile(before, info) {
		file.Close()
		return nil, fmt.Errorf("dropboxsign: FileStore: %s %w (is another program changing the directory?)", f.path(name), errReplacedWhileOpening)
	}
	return file, nil
}

// kind names a file type for an error message.
func kind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}

func (f *FileStore) path(name string) string { return filepath.Join(f.dir, name) }

// Save stores t under key if the stored token is still prev (see [Store]);
// never over a disconnection mark. It holds key's data lock for the
// comparison and the write.
func (f *FileStore) Save(ctx context.Context, key string, prev, t *oauth2.Token) error {
	if t == nil {
		return errors.New("dropboxsign: FileStore: nil token")
	}
	return f.swap(ctx, key, prev, fileRecord{Key: key, Token: t})
}

// Replace stores t under key whatever its file holds (a token, a mark, or
// one the store cannot read), under key's data lock, and then appends key
// to the journal that [FileStore.Watch] reads (see [Store]). An error may
// come after t was stored: if the journal could not be written, the error
// says so.
func (f *FileStore) Replace(ctx context.Context, key string, t *oauth2.Token) error {
	if t == nil {
		return errors.New("dropboxsign: FileStore: nil token")
	}
	return f.write(ctx, key, nil, fileRecord{Key: key, Token: t}, writeReplace)
}

// MarkRefused replaces key's token with a refusal mark if it is still
// refused (see [Store]).
func (f *FileStore) MarkRefused(ctx context.Context, key string, refused *oauth2.Token) error {
	if refused == nil {
		return ErrConflict
	}
	now := time.Now().UTC()
	return f.swap(ctx, key, refused, fileRecord{Key: key, RefusedAt: &now})
}

// swap writes next as key's file if the file holds prev (nil: nothing, or a
// refusal mark), under key's data lock; never over a disconnection mark.
func (f *FileStore) swap(ctx context.Context, key string, prev *oauth2.Token, next fileRecord) error {
	return f.write(ctx, key, prev, next, writeSwap)
}

// How write compares: see its modes.
type writeMode int

const (
	writeSwap       writeMode = iota // if the file holds prev: Save, MarkRefused
	writeReplace                     // whatever the file holds, then journaled: Replace
	writeDisconnect                  // a mark over anything but a mark, then journaled: Disconnect
)

// write writes next as key's file under key's data lock, as mode says;
// with writeReplace and writeDisconnect it then appends key to the
// journal, still under the lock.
func (f *FileStore) write(ctx context.Context, key string, prev *oauth2.Token, next fileRecord, mode writeMode) error {
	root, err := f.openDir()
	if err != nil {
		return err
	}
	defer root.Close()
	unlock, err := f.lock(ctx, root, escapeKey(key)+".lock")
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := f.readIn(root, key)
	keep := false // the file holds what it should already
	switch {
	case mode == writeReplace:
	case mode == writeDisconnect:
		keep = err == nil && rec.DisconnectedAt != nil // the first mark's time stays
	case err == nil && rec.DisconnectedAt != nil:
		return ErrConflict // no save writes a grant back
	case errors.Is(err, ErrNotFound) || err == nil && rec.RefusedAt != nil:
		if prev != nil {
			return ErrConflict
		}
	case err != nil:
		return err
	case prev == nil || rec.Token.AccessToken != prev.AccessToken || rec.Token.RefreshToken != prev.RefreshToken:
		return ErrConflict
	}
	if !keep {
		next.SavedAt = time.Now().UTC()
		if next.Token != nil && f.sealer != nil {
			if next.Sealed, err = f.sealer.Seal(key, next.Token); err != nil {
				return err
			}
			next.Token = nil
		}
		b, err := json.MarshalIndent(next, "", "  ")
		if err != nil {
			return fmt.Errorf("dropboxsign: FileStore: %w", err)
		}
		if err := writeFileAtomic(root, fileName(key), b); err != nil {
			return fmt.Errorf("dropboxsign: FileStore: writing %s: %w", f.Path(key), err)
		}
	}
	if mode == writeSwap {
		return nil
	}
	fileStoreStage("written")
	if err := f.logChange(ctx, root, key); err != nil {
		what := "the token is stored"
		if mode == writeDisconnect {
			what = "the disconnection is recorded"
		}
		return fmt.Errorf("%w (%s, but other processes were not told: do it again)", err, what)
	}
	return nil
}

// Lock takes key's refresh lock (see [Store]): an flock on a file of its own,
// held by this process until unlock, released by the kernel if it dies.
func (f *FileStore) Lock(ctx context.Context, key string) (func(), error) {
	root, err := f.openDir()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return f.lock(ctx, root, escapeKey(key)+".refresh.lock")
}

// lock takes an exclusive flock on the lock file name in root, creating it
// if needed; closing the file releases the lock. Forget removes lock files
// while it holds them: a lock taken on a file that is no longer the one at
// name is let go and taken again on the one there, so that two callers
// never hold name's lock at once.
func (f *FileStore) lock(ctx context.Context, root *os.Root, name string) (func(), error) {
	for {
		file, err := f.open(root, name, os.O_RDWR|os.O_CREATE)
		if err != nil {
			return nil, err
		}
		if err := flock(ctx, file); err != nil {
			file.Close()
			return nil, fmt.Errorf("dropboxsign: FileStore: locking %s: %w", f.path(name), err)
		}
		held, err := file.Stat()
		if err == nil {
			var now os.FileInfo
			if now, err = root.Lstat(name); err == nil && os.SameFile(held, now) {
				var once sync.Once
				return func() { once.Do(func() { file.Close() }) }, nil
			}
		}
		file.Close()
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("dropboxsign: FileStore: locking %s: %w", f.path(name), err)
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("dropboxsign: FileStore: locking %s: %w", f.path(name), err)
		}
	}
}

// Keys yields the keys that have a file, token or mark, in file name
// order. A file that holds the record of the key it is named after is
// listed under that key (a long key's file name is a hash of it). Any other
// file named like a key's is listed under that key too, so that it can be
// seen and fixed: Load reports what is wrong with it. A long key's file
// that cannot be read is not listed: its name, a hash, does not give the
// key back.
func (f *FileStore) Keys(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		f.scan(ctx, func(key string, rec *fileRecord) bool { return yield(key, nil) },
			func(err error) { yield("", err) })
	}
}

// Refused yields a *RefusedError for each key marked refused, in file name
// order.
func (f *FileStore) Refused(ctx context.Context) iter.Seq2[*RefusedError, error] {
	return func(yield func(*RefusedError, error) bool) {
		f.scan(ctx, func(key string, rec *fileRecord) bool {
			if rec == nil || rec.RefusedAt == nil || rec.DisconnectedAt != nil {
				return true
			}
			return yield(&RefusedError{Key: key, Since: *rec.RefusedAt}, nil)
		}, func(err error) { yield(nil, err) })
	}
}

// scan calls each with every key that has a file, and its record (nil if
// unreadable), until each returns false; an error goes to fail, and ends it.
func (f *FileStore) scan(ctx context.Context, each func(string, *fileRecord) bool, fail func(error)) {
	root, err := f.openDir()
	if err != nil {
		fail(err)
		return
	}
	defer root.Close()
	d, err := root.Open(".")
	if err != nil {
		fail(fmt.Errorf("dropboxsign: FileStore: %w", err))
		return
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		fail(fmt.Errorf("dropboxsign: FileStore: listing %s: %w", f.dir, err))
		return
	}
	sort.Strings(names)
	for _, name := range names {
		base, ok := strings.CutSuffix(name, ".json")
		if !ok {
			continue
		}
		if err := ctx.Err(); err != nil {
			fail(err)
			return
		}
		rec, err := f.readFile(root, name)
		if err == nil && fileName(rec.Key) == name {
			if !each(rec.Key, rec) {
				return
			}
		} else if key, ok := unescapeKey(base); ok && escapeKey(key) == base {
			if !each(key, nil) { // unreadable, or another key's: listed, so that it can be seen and fixed
				return
			}
		}
	}
}

// writeFileAtomic replaces name in root with data so that readers see the
// old file or the new one, never a part, even across a crash. The rename
// replaces a directory entry: it never writes through a link.
func writeFileAtomic(root *os.Root, name string, data []byte) (err error) {
	tmpName := ".tmp-" + rand.Text()
	tmp, err := root.OpenFile(tmpName, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			root.Remove(tmpName)
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
	if err = root.Rename(tmpName, name); err != nil {
		return err
	}
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// escapeKey turns any key into a file name: letters, digits, '-' and '_'
// stand for themselves, every other byte is %XX (so no '/', no "..").
func escapeKey(key string) string {
	e := escapeAll(key)
	if len(e) > maxNameLen {
		// File names are limited (255 bytes on most systems): a long key's
		// file is named after its hash; the file records the key itself.
		sum := sha256.Sum256([]byte(key))
		return "%long-" + hex.EncodeToString(sum[:])
	}
	return e
}

// escapeAll is escapeKey without the limit on length: "%" for the empty
// key, otherwise only letters, digits, '-', '_' and %XX (X: 0-9, A-F) of a
// byte that is not one of those.
func escapeAll(key string) string {
	const hexDigits = "0123456789ABCDEF"
	if key == "" {
		return "%"
	}
	b := make([]byte, 0, len(key))
	for i := 0; i < len(key); i++ {
		if c := key[i]; plainKeyByte(c) {
			b = append(b, c)
		} else {
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
		}
	}
	return string(b)
}

func plainKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
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
