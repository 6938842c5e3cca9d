//go:build unix

package dropboxsign_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
)

// The layouts operators create: symlinks, shared directories, copied
// files, special files. Each test failed on the FileStore before it
// resolved its directory once and checked every file it opens.

func secretToken(n string) *oauth2.Token {
	return &oauth2.Token{AccessToken: "secret-at-" + n, RefreshToken: "secret-rt-" + n, TokenType: "Bearer",
		Expiry: time.Now().Add(time.Hour)}
}

// wantErr fails unless err is an error (not ErrNotFound or ErrConflict)
// whose text says every one of says and no token value.
func wantErr(t *testing.T, what string, err error, says ...string) {
	t.Helper()
	if err == nil || errors.Is(err, dropboxsign.ErrNotFound) || errors.Is(err, dropboxsign.ErrConflict) {
		t.Errorf("%s: err = %v, want a refusal", what, err)
		return
	}
	for _, s := range says {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%s: error %q does not say %q", what, err, s)
		}
	}
	if strings.Contains(err.Error(), "secret-") {
		t.Errorf("%s: error shows a token: %q", what, err)
	}
}

func mkdir(t *testing.T, dir string, mode os.FileMode) string {
	t.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil { // whatever the umask
		t.Fatal(err)
	}
	return dir
}

// A token directory that is a symlink is resolved once: re-pointing the
// link later does not move this store, so a read and the write after it
// always meet the same file.
func TestFileStoreResolvesASymlinkedDirectoryOnce(t *testing.T) {
	base := t.TempDir()
	real := mkdir(t, filepath.Join(base, "real"), 0o700)
	other := mkdir(t, filepath.Join(base, "other"), 0o700)
	link := filepath.Join(base, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	fs, err := dropboxsign.NewFileStore(link)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.EvalSymlinks(real)
	if got := filepath.Dir(fs.Path("acct")); got != want {
		t.Fatalf("Path lies in %s, want the real directory %s", got, want)
	}
	ctx := testContext(t)
	if err := fs.Save(ctx, "acct", nil, secretToken("1")); err != nil {
		t.Fatal(err)
	}
	os.Remove(link)
	if err := os.Symlink(other, link); err != nil {
		t.Fatal(err)
	}
	tok, err := fs.Load(ctx, "acct")
	if err != nil || tok.AccessToken != "secret-at-1" {
		t.Fatalf("Load after the link moved: %v, %v; want the token in the real directory", tok, err)
	}
	if err := fs.Save(ctx, "acct", tok, secretToken("2")); err != nil {
		t.Fatal(err)
	}
	if got := readStoredToken(t, filepath.Join(real, "acct.json")); got != "secret-at-2" {
		t.Errorf("real directory holds %q, want the new token", got)
	}
	if entries, _ := os.ReadDir(other); len(entries) != 0 {
		t.Errorf("the store wrote into the link's new target: %v", entries)
	}
}

func readStoredToken(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Token struct {
			AccessToken string `json:"access_token"`
		} `json:"token"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	return rec.Token.AccessToken
}

// A token file that is a symlink is refused, never followed: a rename over
// it would replace the link while reads went to its target.
func TestFileStoreRefusesSymlinkedTokenFiles(t *testing.T) {
	ctx := testContext(t)
	fs, elsewhere := newFileStore(t), newFileStore(t)
	if err := elsewhere.Save(ctx, "alice", nil, secretToken("a")); err != nil {
		t.Fatal(err)
	}
	if err := fs.Save(ctx, "carol", nil, secretToken("c")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere.Path("alice"), fs.Path("alice")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("carol.json", fs.Path("dave")); err != nil { // inside the directory
		t.Fatal(err)
	}
	for _, key := range []string{"alice", "dave"} {
		_, err := fs.Load(ctx, key)
		wantErr(t, "Load of "+key, err, fs.Path(key), "symbolic link")
		err = fs.Save(ctx, key, secretToken("a"), secretToken("new"))
		wantErr(t, "Save of "+key, err, fs.Path(key), "symbolic link")
		if info, err := os.Lstat(fs.Path(key)); err != nil || info.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s: the link was replaced (%v)", key, err)
		}
	}
	if tok, err := elsewhere.Load(ctx, "alice"); err != nil || tok.AccessToken != "secret-at-a" {
		t.Errorf("the link's target changed: %v, %v", tok, err)
	}
	if keys, err := keysOf(fs); err != nil || !slices.Equal(keys, []string{"alice", "carol", "dave"}) {
		t.Errorf("Keys = %q, %v; want the links listed, so that status shows them", keys, err)
	}
}

// Lock files are never followed either: not to a file elsewhere, and a
// dangling link does not create its target.
func TestFileStoreRefusesSymlinkedLockFiles(t *testing.T) {
	ctx := testContext(t)
	fs := newFileStore(t)
	outside := t.TempDir()
	dir := filepath.Dir(fs.Path("x"))
	os.WriteFile(filepath.Join(outside, "existing"), nil, 0o600)
	os.Symlink(filepath.Join(outside, "existing"), filepath.Join(dir, "alice.lock"))
	os.Symlink(filepath.Join(outside, "dangling"), filepath.Join(dir, "bob.refresh.lock"))

	err := fs.Save(ctx, "alice", nil, secretToken("a"))
	wantErr(t, "Save with a linked data lock", err, filepath.Join(dir, "alice.lock"), "symbolic link")
	if _, err := os.Stat(fs.Path("alice")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a token was written without the lock: %v", err)
	}
	_, err = fs.Lock(ctx, "bob")
	wantErr(t, "Lock with a dangling linked lock", err, filepath.Join(dir, "bob.refresh.lock"), "symbolic link")
	if _, err := os.Lstat(filepath.Join(outside, "dangling")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the link's target was created: %v", err)
	}
}

// An existing directory's mode is the operator's: a readable 0755 is
// accepted as it is, not changed.
func TestFileStoreLeavesAnExistingDirectoryAlone(t *testing.T) {
	dir := mkdir(t, filepath.Join(t.TempDir(), "tokens"), 0o755)
	fs, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Save(testContext(t), "acct", nil, secretToken("1")); err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(dir); info.Mode().Perm() != 0o755 {
		t.Errorf("mode of an existing directory changed to %v", info.Mode().Perm())
	}
	// Directories it creates are 0700, each of them.
	nested := filepath.Join(t.TempDir(), "a", "b")
	if _, err := dropboxsign.NewFileStore(nested); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{nested, filepath.Dir(nested)} {
		if info, _ := os.Stat(d); info.Mode().Perm() != 0o700 {
			t.Errorf("created %s with mode %v, want 0700", d, info.Mode().Perm())
		}
	}
}

// A directory others can write to (or that another user owns) could have
// its token files replaced by them: refused, with what to do, and left as
// it was.
func TestFileStoreRefusesUnsafeDirectories(t *testing.T) {
	base := t.TempDir()
	for _, mode := range []os.FileMode{0o770, 0o707, 0o777, 0o777 | os.ModeSticky} {
		dir := mkdir(t, filepath.Join(base, "m"+strings.ReplaceAll(mode.String(), "-", "_")), mode)
		_, err := dropboxsign.NewFileStore(dir)
		wantErr(t, "directory "+mode.String(), err, dir, "writable", "chmod 700 "+dir)
		if info, _ := os.Stat(dir); info.Mode()&(os.ModePerm|os.ModeSticky) != mode {
			t.Errorf("%v: the directory's mode was changed to %v", mode, info.Mode())
		}
	}

	// Through a symlink, the real directory is what is checked and named.
	shared := mkdir(t, filepath.Join(base, "shared"), 0o777)
	os.Symlink(shared, filepath.Join(base, "link"))
	_, err := dropboxsign.NewFileStore(filepath.Join(base, "link"))
	wantErr(t, "link to a shared directory", err, "chmod 700 "+shared)

	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o600)
	_, err = dropboxsign.NewFileStore(file)
	wantErr(t, "a regular file", err, file, "not a directory")

	// Made unsafe after it was opened: refused from then on.
	dir := mkdir(t, filepath.Join(base, "later"), 0o700)
	fs, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	_, err = fs.Load(testContext(t), "acct")
	wantErr(t, "Load from a directory made writable by all", err, "chmod 700 "+dir)

	if os.Geteuid() != 0 {
		t.Log("not root: cannot make a directory owned by another user; skipping that case")
		return
	}
	theirs := mkdir(t, filepath.Join(base, "theirs"), 0o700)
	if err := os.Chown(theirs, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err = dropboxsign.NewFileStore(theirs)
	wantErr(t, "another user's directory", err, theirs, "owned by uid 65534")
}

// A file copied or renamed from another key's is not that key's token:
// Load and Save refuse it, naming both files; Keys lists it under its file
// name, so that status shows it as unreadable.
func TestFileStoreRefusesATokenFileCopiedFromAnotherKey(t *testing.T) {
	ctx := testContext(t)
	fs := newFileStore(t)
	if err := fs.Save(ctx, "alice", nil, secretToken("a")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(fs.Path("alice"))
	os.WriteFile(fs.Path("bob"), b, 0o600)

	_, err := fs.Load(ctx, "bob")
	wantErr(t, "Load of the copy", err, fs.Path("bob"), "alice.json")
	err = fs.Save(ctx, "bob", secretToken("a"), secretToken("b"))
	wantErr(t, "Save over the copy", err, fs.Path("bob"), "alice.json")
	if keys, err := keysOf(fs); err != nil || !slices.Equal(keys, []string{"alice", "bob"}) {
		t.Errorf("Keys = %q, %v", keys, err)
	}
	if tok, err := fs.Load(ctx, "alice"); err != nil || tok.AccessToken != "secret-at-a" {
		t.Errorf("the original: %v, %v", tok, err)
	}
}

// A FIFO would block a reader forever, a huge file would be read whole:
// token files are small regular files, anything else is refused.
func TestFileStoreRefusesSpecialAndHugeFiles(t *testing.T) {
	ctx := testContext(t)
	fs := newFileStore(t)
	if err := syscall.Mkfifo(fs.Path("fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(fs.Path("dir"), 0o700)
	rec, _ := json.Marshal(map[string]any{"key": "huge", "token": secretToken("h")})
	os.WriteFile(fs.Path("huge"), append(rec, bytes.Repeat([]byte(" "), 1<<20)...), 0o600)

	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := fs.Load(ctx, "fifo")
		wantErr(t, "Load of a FIFO", err, fs.Path("fifo"), "not a regular file but a named pipe")
		_, err = fs.Load(ctx, "dir")
		wantErr(t, "Load of a directory", err, fs.Path("dir"), "not a regular file")
		_, err = fs.Load(ctx, "huge")
		wantErr(t, "Load of a huge file", err, fs.Path("huge"), "1 MiB")
		keysOf(fs)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("FileStore blocked on a FIFO")
	}
}

// A directory replaced after the store opened it (moved away and made
// anew, or swapped for a link) is an error, not a silent switch to another
// set of tokens.
func TestFileStoreNoticesItsDirectoryWasReplaced(t *testing.T) {
	ctx := testContext(t)
	base := t.TempDir()
	dir := mkdir(t, filepath.Join(base, "tokens"), 0o700)
	fs, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Save(ctx, "acct", nil, secretToken("1")); err != nil {
		t.Fatal(err)
	}
	os.Rename(dir, dir+".old")
	mkdir(t, dir, 0o700)
	_, err = fs.Load(ctx, "acct")
	wantErr(t, "Load after the directory was replaced", err, dir, "replaced")
	err = fs.Save(ctx, "acct", nil, secretToken("2"))
	wantErr(t, "Save after the directory was replaced", err, dir, "replaced")
	if _, err := os.Stat(filepath.Join(dir, "acct.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a token was written into the new directory: %v", err)
	}
	_, err = fs.Lock(ctx, "acct")
	wantErr(t, "Lock after the directory was replaced", err, dir, "replaced")
}

// No layout makes the store panic or show a token.
func TestFileStoreSurvivesGarbage(t *testing.T) {
	ctx := testContext(t)
	fs := newFileStore(t)
	for name, content := range map[string]string{
		"null":     `null`,
		"numkey":   `{"key": 7, "token": {"access_token": "secret-x"}}`,
		"nullkey":  `{"key": null, "token": {"access_token": "secret-x"}}`,
		"longkey":  `{"key": "` + strings.Repeat("k", 5000) + `", "token": {"access_token": "secret-x"}}`,
		"ctrlkey":  `{"key": "a\u0000\u001b[31m", "token": {"access_token": "secret-x"}}`,
		"notoken":  `{"key": "notoken", "token": null}`,
		"%ZZ":      `{}`,
		"%long-00": `{}`,
	} {
		os.WriteFile(filepath.Join(filepath.Dir(fs.Path("x")), name+".json"), []byte(content), 0o600)
	}
	keys, err := keysOf(fs)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if _, err := fs.Load(ctx, k); err == nil {
			t.Errorf("Load(%q) of garbage succeeded", k)
		} else if strings.Contains(err.Error(), "secret-") || strings.ContainsAny(err.Error(), "\x00\x1b") {
			t.Errorf("Load(%q): %q", k, err)
		}
	}
}
