package dropboxsign

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"time"
)

// FileStore's disconnection marks, Forget, and its journal of changes,
// which Watch reads.
//
// The journal is a file of lines, one per change, each the changed key
// escaped as a file name is (escapeAll: no length limit, so that a long
// key's line gives the key back), or "*" (every key may have changed: a key
// too long for a line). Its names start with '%' followed by letters that
// are no hex digits, which escapeKey never writes: no key's file, lock file
// or temporary file can be one of them, and scan skips them (they do not
// end in ".json").
const (
	journalName = "%changes"      // the current generation
	journalOld  = "%changes.1"    // the one before, moved aside
	journalLock = "%changes.lock" // held to append, rotate or remove
	// journalMax is the size past which a writer starts a new generation.
	journalMax = 256 << 10
	// journalMaxLine bounds a line: a longer key's change is written "*".
	journalMaxLine = 8 << 10
	// journalMaxBehind: a watcher that many bytes behind (a journal grown
	// by hand, never by the store) skips them and reports All rather than
	// reading them.
	journalMaxBehind = 4 << 20
	// journalMaxKeys: a watcher that reads more keys than that at once
	// reports All instead (cheaper for its user than so many keys).
	journalMaxKeys = 10000
	// journalCheck is how often a watcher stats the journal.
	journalCheck = 50 * time.Millisecond
)

// fileStoreStage is called at points of a write that tests need to stop
// at ("written": the record durable, the journal not yet written;
// "journal": its lock held); a no-op otherwise. Tests set it before any
// store is used.
var fileStoreStage = func(string) {}

// Disconnect replaces whatever key's file holds (a token, a refusal mark, a
// file the store cannot read, or nothing) with a disconnection mark, which
// holds the key and the time, nothing of the grant; a mark already there
// is kept as it is. It writes as Save does (atomically, fsync'd, under
// key's data lock), then appends key to the journal that
// [FileStore.Watch] reads, and only then returns nil (see [Store]). An
// error may come after the mark was written: doing it again is harmless.
func (f *FileStore) Disconnect(ctx context.Context, key string) error {
	now := time.Now().UTC()
	return f.write(ctx, key, nil, fileRecord{Key: key, DisconnectedAt: &now}, writeDisconnect)
}

// Forget removes key's file if it holds a disconnection mark recorded
// before the time given; nil if key has no file; ErrConflict, changing
// nothing, if the file holds a token, a refusal mark or a later mark (see
// [Store]). A file the store cannot read is an error that names it. With
// the file, Forget removes what else names the key: its lock files (the
// refresh lock only if no process holds it), and the journal if a line of
// it names the key (watchers then report All once).
func (f *FileStore) Forget(ctx context.Context, key string, before time.Time) error {
	root, err := f.openDir()
	if err != nil {
		return err
	}
	defer root.Close()
	dataLock := escapeKey(key) + ".lock"
	unlock, err := f.lock(ctx, root, dataLock)
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := f.readIn(root, key)
	switch {
	case errors.Is(err, ErrNotFound):
		// Nothing to forget but what an earlier Forget may have left.
	case err != nil:
		return err
	case rec.DisconnectedAt == nil || !rec.DisconnectedAt.Before(before):
		return ErrConflict
	default:
		if err := root.Remove(fileName(key)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("dropboxsign: FileStore: removing %s: %w", f.Path(key), err)
		}
		if err := syncDir(root); err != nil {
			return fmt.Errorf("dropboxsign: FileStore: removing %s: %w", f.Path(key), err)
		}
	}
	if err := f.forgetJournal(ctx, root, key); err != nil {
		return err
	}
	f.removeFreeLock(ctx, root, escapeKey(key)+".refresh.lock")
	// Removed while held: a process waiting for it takes it again on a
	// new file (see lock).
	if err := root.Remove(dataLock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("dropboxsign: FileStore: removing %s: %w", f.path(dataLock), err)
	}
	return nil
}

// removeFreeLock removes the lock file name if no process holds its lock,
// and leaves it otherwise (it holds nothing but its name).
func (f *FileStore) removeFreeLock(ctx context.Context, root *os.Root, name string) {
	if _, err := root.Lstat(name); err != nil {
		return
	}
	now, cancel := context.WithCancel(ctx)
	cancel() // flock tries once, without waiting
	if unlock, err := f.lock(now, root, name); err == nil {
		root.Remove(name)
		unlock()
	}
}

func syncDir(root *os.Root) error {
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Disconnected yields a *DisconnectedError for each key marked
// disconnected, in file name order.
func (f *FileStore) Disconnected(ctx context.Context) iter.Seq2[*DisconnectedError, error] {
	return func(yield func(*DisconnectedError, error) bool) {
		f.scan(ctx, func(key string, rec *fileRecord) bool {
			if rec == nil || rec.DisconnectedAt == nil {
				return true
			}
			return yield(&DisconnectedError{Key: key, Since: *rec.DisconnectedAt}, nil)
		}, func(err error) { yield(nil, err) })
	}
}

// journalLine is key's line in the journal.
func journalLine(key string) []byte {
	e := escapeAll(key)
	if len(e) >= journalMaxLine {
		return []byte("*\n")
	}
	return append([]byte(e), '\n')
}

// parseJournalLine returns the key of a journal line (without its '\n'),
// all for "*", and ok false for anything the store does not write.
func parseJournalLine(line []byte) (key string, all, ok bool) {
	switch {
	case len(line) == 0 || len(line) >= journalMaxLine:
		return "", false, false
	case string(line) == "*":
		return "", true, true
	case string(line) == "%":
		return "", false, true
	}
	b := make([]byte, 0, len(line))
	for i := 0; i < len(line); i++ {
		c := line[i]
		if plainKeyByte(c) {
			b = append(b, c)
			continue
		}
		if c != '%' || i+2 >= len(line) {
			return "", false, false
		}
		hi, ok1 := upperHex(line[i+1])
		lo, ok2 := upperHex(line[i+2])
		if !ok1 || !ok2 || plainKeyByte(hi<<4|lo) {
			return "", false, false // not as escapeAll writes it
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	return string(b), false, true
}

func upperHex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// logChange appends key's line to the journal, under the journal's lock,
// and starts a new generation when it has passed journalMax.
func (f *FileStore) logChange(ctx context.Context, root *os.Root, key string) error {
	unlock, err := f.lock(ctx, root, journalLock)
	if err != nil {
		return err
	}
	defer unlock()
	fileStoreStage("journal")
	file, err := f.open(root, journalName, os.O_RDWR|os.O_APPEND|os.O_CREATE)
	if err != nil {
		return err
	}
	defer file.Close()
	line := journalLine(key)
	info, err := file.Stat()
	if err == nil && info.Size() > 0 {
		// A line cut short (a crash of the machine mid-write) must not
		// run into this one and make another key of both.
		var last [1]byte
		if _, err = file.ReadAt(last[:], info.Size()-1); err == nil && last[0] != '\n' {
			line = append([]byte{'\n'}, line...)
		}
	}
	if err == nil {
		_, err = file.Write(line)
	}
	if err != nil {
		return fmt.Errorf("dropboxsign: FileStore: writing the journal %s: %w", f.path(journalName), err)
	}
	if info.Size()+int64(len(line)) > journalMax {
		// Best effort: the change is journaled; a failed rotation is
		// tried again at the next change. The new generation is created
		// at once, so that a watcher sees the name change.
		if root.Rename(journalName, journalOld) == nil {
			if nf, err := root.OpenFile(journalName, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
				nf.Close()
			}
		}
	}
	return nil
}

// forgetJournal removes both generations of the journal if either has a
// line naming key.
func (f *FileStore) forgetJournal(ctx context.Context, root *os.Root, key string) error {
	unlock, err := f.lock(ctx, root, journalLock)
	if err != nil {
		return err
	}
	defer unlock()
	line := bytes.TrimSuffix(journalLine(key), []byte{'\n'})
	found := false
	for _, name := range []string{journalName, journalOld} {
		file, err := f.open(root, name, os.O_RDONLY)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		found, err = hasLine(file, line)
		file.Close()
		if err != nil {
			return fmt.Errorf("dropboxsign: FileStore: reading the journal %s: %w", f.path(name), err)
		}
		if found {
			break
		}
	}
	if !found {
		return nil
	}
	for _, name := range []string{journalOld, journalName} {
		if err := root.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("dropboxsign: FileStore: removing the journal %s: %w", f.path(name), err)
		}
	}
	return nil
}

// hasLine reports whether r has line (without its '\n'), reading it a
// little at a time; a journal too large for the store to have written
// counts as having it (it is then removed).
func hasLine(file *os.File, line []byte) (bool, error) {
	if info, err := file.Stat(); err != nil || info.Size() > journalMaxBehind {
		return err == nil, err
	}
	r := bufio.NewReaderSize(file, 64<<10)
	long := false // within a line longer than the buffer
	for {
		l, err := r.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			long = true
			continue
		case !long && bytes.Equal(bytes.TrimSuffix(l, []byte{'\n'}), line):
			return true, nil
		case err == io.EOF:
			return false, nil
		case err != nil:
			return false, err
		}
		long = false
	}
}

// Watch reports the keys that Disconnect and Replace change, in this
// process or any other using the same directory, from the moment it is
// called until ctx ends (see [Watcher]), and first those its journal holds
// from before the call (the current generation, read from its start: the
// caller may have read the store before it called). It stats the journal every 50 ms
// and reads what was appended since its last read when it changed, and
// every poll in any case (DefaultWatchPoll if poll is not positive), which
// also retries a failure (the directory gone or unsafe, the journal
// unreadable), each one reported with Err. Lines that are no key as the
// store writes them are skipped. A journal that moved on past what Watch
// could read (rotated twice between two checks, truncated, removed or
// replaced) is reported with All. Watch starts no goroutine: it reports
// from the one that called it.
func (f *FileStore) Watch(ctx context.Context, poll time.Duration, report func(Change)) {
	if poll <= 0 {
		poll = DefaultWatchPoll
	}
	w := &journalWatcher{f: f, path: filepath.Join(f.dir, journalName), atEnd: true}
	defer w.closeCur()
	w.sig, w.sigErr = os.Lstat(w.path)
	if !w.check(ctx, report) && w.cur == nil {
		// Where the journal stood when Watch was called is unknown: what
		// came since is reported with All once it can be read.
		w.lost = true
	}
	// Timers reset as they fire, not tickers: they end with this call
	// like every timer of the package (see TestNoTimerOutlivesACall).
	fast := time.NewTimer(journalCheck)
	defer fast.Stop()
	slow := time.NewTimer(poll)
	defer slow.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-fast.C:
			fast.Reset(journalCheck)
			sig, err := os.Lstat(w.path)
			if sameSig(sig, err, w.sig, w.sigErr) {
				continue
			}
			w.sig, w.sigErr = sig, err
		case <-slow.C:
			slow.Reset(poll)
		}
		w.check(ctx, report)
	}
}

// sameSig reports whether two stats of the journal tell of no change: the
// same file, size and modification time, or both failed.
func sameSig(a os.FileInfo, aErr error, b os.FileInfo, bErr error) bool {
	if aErr == errCheckAgain || bErr == errCheckAgain {
		return false
	}
	if aErr != nil || bErr != nil {
		return aErr != nil && bErr != nil
	}
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// journalWatcher is one Watch's place in the journal.
//
// It reads a generation from an open file, so that a generation moved
// aside (journalOld) or removed is still read to its end. Writers append
// and rotate under the journal's lock, so a generation receives nothing
// once another is at journalName: read to its end, it was read whole. The
// next one follows it (is to be read from its start) if journalOld is
// still the generation it read when it finds the next one; otherwise one
// came and went unread: All.
type journalWatcher struct {
	f    *FileStore
	path string // of journalName, for the cheap check

	cur     *os.File    // the generation being read; nil: none
	curInfo os.FileInfo // its identity
	off     int64       // where its next line starts
	skip    bool        // within a line too long to be one the store writes

	// With cur nil: the generation the next one at journalName follows
	// (journalOld as it was; nil: none), unless atEnd, which reads the next
	// one from its end, and lost, which also reports All.
	prev  os.FileInfo
	atEnd bool
	lost  bool

	sig    os.FileInfo // the last cheap check
	sigErr error

	buf  []byte
	keys []string        // read and not yet reported, each once
	seen map[string]bool // keys' set
	all  bool
}

// add notes a key read from the journal.
func (w *journalWatcher) add(key string) {
	switch {
	case w.all || w.seen[key]:
	case len(w.keys) >= journalMaxKeys:
		w.all = true
		w.keys, w.seen = nil, nil
	default:
		if w.seen == nil {
			w.seen = map[string]bool{}
		}
		w.seen[key] = true
		w.keys = append(w.keys, key)
	}
}

// check reads what the journal gained and reports it; it reports a failure
// with Err and returns false.
func (w *journalWatcher) check(ctx context.Context, report func(Change)) bool {
	err := w.read()
	switch {
	case ctx.Err() != nil:
	case w.all:
		report(Change{All: true})
	default:
		for _, k := range w.keys {
			report(Change{Key: k})
		}
	}
	w.keys, w.seen, w.all = w.keys[:0], nil, false
	if err != nil && ctx.Err() == nil {
		report(Change{Err: err})
	}
	return err == nil
}

// read gathers in keys and all what the journal gained.
func (w *journalWatcher) read() error {
	root, err := w.f.openDir()
	if err != nil {
		return err
	}
	defer root.Close()
	// Each round reads one generation to its end, or finds the next: a
	// few cover all that a writer can do between two checks; what is left
	// waits for the next check, at the next tick.
	for range 8 {
		done, err := w.step(root)
		if err != nil || done {
			return err
		}
	}
	w.sig, w.sigErr = nil, errCheckAgain
	return nil
}

// errCheckAgain, as the last cheap check's outcome, makes the next one
// differ from it.
var errCheckAgain = errors.New("check again")

// step reads cur to its end if it is still the journal, and otherwise
// moves to the generation after it; done says there is nothing more to
// read now.
func (w *journalWatcher) step(root *os.Root) (done bool, err error) {
	if w.cur != nil {
		now, err := root.Lstat(journalName)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return true, fmt.Errorf("dropboxsign: FileStore: watching %s: %w", w.f.path(journalName), err)
		}
		if err == nil && os.SameFile(now, w.curInfo) {
			if now.Size() < w.off { // truncated: what was there is gone
				w.all = true
				w.off = now.Size()
				if err := w.startAtLine(); err != nil {
					return true, err
				}
			}
			return true, w.readCur(now.Size())
		}
		// Replaced: nothing more comes to cur; read it to its end.
		info, err := w.cur.Stat()
		if err == nil {
			err = w.readCur(info.Size())
		}
		if err != nil {
			return true, fmt.Errorf("dropboxsign: FileStore: reading the journal %s: %w", w.f.path(journalName), err)
		}
		old, err := lstatOrNil(root, journalOld)
		if err != nil {
			return true, fmt.Errorf("dropboxsign: FileStore: watching %s: %w", w.f.path(journalOld), err)
		}
		if old == nil || !os.SameFile(old, w.curInfo) {
			w.lost = true // cur was not moved aside but removed or replaced
		}
		w.closeCur()
		w.prev = old
		return false, nil
	}
	file, err := w.f.open(root, journalName, os.O_RDONLY)
	missing := errors.Is(err, os.ErrNotExist)
	if err != nil && !missing {
		return true, err
	}
	// After the open: a generation moved aside since would show here.
	old, err := lstatOrNil(root, journalOld)
	if err != nil {
		if file != nil {
			file.Close()
		}
		return true, fmt.Errorf("dropboxsign: FileStore: watching %s: %w", w.f.path(journalOld), err)
	}
	follows := !w.atEnd && !w.lost && sameOrBothNil(old, w.prev)
	if w.lost || !w.atEnd && !follows {
		w.all = true // a generation came and went unread, or where it stood is unknown
	}
	first := w.atEnd && !w.lost
	w.atEnd, w.lost = false, false
	if missing {
		w.prev = old
		return true, nil
	}
	info, err := file.Stat()
	if err != nil {
		file.Close()
		return true, fmt.Errorf("dropboxsign: FileStore: watching %s: %w", w.f.path(journalName), err)
	}
	w.cur, w.curInfo, w.off, w.skip = file, info, 0, false
	if !follows && !first {
		// From its end; inside a line, skip to the next.
		w.off, w.skip = info.Size(), true
		if err := w.startAtLine(); err != nil {
			return true, err
		}
	}
	return false, nil
}

// startAtLine sets skip: false if off is the start of a line.
func (w *journalWatcher) startAtLine() error {
	if w.off == 0 {
		w.skip = false
		return nil
	}
	var last [1]byte
	if _, err := w.cur.ReadAt(last[:], w.off-1); err != nil {
		return fmt.Errorf("dropboxsign: FileStore: reading the journal %s: %w", w.f.path(journalName), err)
	}
	w.skip = last[0] != '\n'
	return nil
}

func lstatOrNil(root *os.Root, name string) (os.FileInfo, error) {
	info, err := root.Lstat(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return info, err
}

func sameOrBothNil(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return os.SameFile(a, b)
}

func (w *journalWatcher) closeCur() {
	if w.cur != nil {
		w.cur.Close()
		w.cur, w.curInfo = nil, nil
	}
}

// readCur reads cur's whole lines from off up to size, a buffer at a time.
func (w *journalWatcher) readCur(size int64) error {
	if size-w.off > journalMaxBehind {
		// Far more than the store writes between two checks: not read.
		w.all = true
		w.off, w.skip = size, true
		return w.startAtLine()
	}
	if w.buf == nil {
		w.buf = make([]byte, 64<<10)
	}
	for w.off < size {
		n, err := w.cur.ReadAt(w.buf[:min(int64(len(w.buf)), size-w.off)], w.off)
		if n == 0 {
			if err == io.EOF {
				return nil // shorter than it was: truncated, seen at the next check
			}
			return err
		}
		chunk := w.buf[:n]
		end := bytes.LastIndexByte(chunk, '\n')
		if end < 0 {
			if n == len(w.buf) { // a line longer than the buffer: no key
				w.skip = true
				w.off += int64(n)
				continue
			}
			return nil // a line not yet whole: read when it is
		}
		for line := range bytes.SplitSeq(chunk[:end], []byte{'\n'}) {
			if w.skip {
				w.skip = false
				continue
			}
			switch key, all, ok := parseJournalLine(line); {
			case all:
				w.all = true
			case ok:
				w.add(key)
			}
		}
		w.off += int64(end) + 1
	}
	return nil
}
