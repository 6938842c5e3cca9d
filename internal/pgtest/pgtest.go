// Package pgtest starts a real PostgreSQL server for tests: initdb into a
// temporary directory, postgres on a free loopback port, trust
// authentication for its superuser on 127.0.0.1 only, and no fsync (a test
// server need not survive a power cut). PostgreSQL refuses to run as root:
// under root it runs as the "postgres" user that Debian's package creates.
// Without PostgreSQL, a test skips, saying how to install it, except under
// CI (CI=true), where it fails. It needs no PostgreSQL client library: SQL
// goes through psql.
package pgtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is one PostgreSQL server.
type Server struct {
	t    testing.TB // the test that started it; nil for a shared one
	Port int
	dir  string // data directory
	bin  string // directory of initdb, postgres, psql
	cred *syscall.Credential
	cmd  *exec.Cmd
}

// DSN returns a connection string for the server's superuser.
func (s *Server) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.Port)
}

// binDir finds the directory of initdb and postgres: on the PATH, or where
// Debian's package puts them (the newest version).
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := os.Stat(filepath.Join(filepath.Dir(p), "postgres")); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("initdb not found")
}

func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// errMissing says PostgreSQL is not installed.
var errMissing = errors.New("PostgreSQL is not installed")

func requireOrSkip(t testing.TB, err error) {
	t.Helper()
	switch {
	case !errors.Is(err, errMissing):
		t.Fatal(err)
	case os.Getenv("CI") == "true":
		t.Fatal("PostgreSQL is not installed, and CI must run the PostgreSQL tests (apt-get install -y postgresql)")
	default:
		t.Skip("PostgreSQL is not installed: apt-get install -y postgresql to run the PostgreSQL tests")
	}
}

// Start starts a server of the test's own, stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := start(t)
	if err != nil {
		requireOrSkip(t, err)
	}
	t.Cleanup(func() { s.Stop(); os.RemoveAll(s.dir) })
	return s
}

func start(t testing.TB) (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, errMissing
	}
	s := &Server{t: t, bin: bin}
	// Not t.TempDir: its parents are private to root, and postgres runs as
	// another user under root.
	if s.dir, err = os.MkdirTemp("", "pgtest-"); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("PostgreSQL refuses to run as root, and there is no user %q to run it as (Debian's postgresql package creates it): %v", "postgres", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(s.dir, uid, gid); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(s.dir, "data")
	init := s.command("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--no-locale")
	if out, err := init.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if s.Port, err = freePort(); err != nil {
		return nil, err
	}
	s.Start()
	return s, nil
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd
}

// Start starts the server (again) on its port and waits until it accepts
// queries.
func (s *Server) Start() {
	s.cmd = s.command("postgres", "-D", filepath.Join(s.dir, "data"), "-p", strconv.Itoa(s.Port),
		"-h", "127.0.0.1", "-k", s.dir, "-c", "fsync=off", "-c", "max_connections=200", "-c", "log_min_messages=fatal")
	s.cmd.Stderr = os.Stderr
	if err := s.cmd.Start(); err != nil {
		s.fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := s.Query("SELECT 1"); err == nil {
			return
		}
		if time.Now().After(deadline) {
			_, err := s.Query("SELECT 1")
			s.Stop()
			s.fatal(fmt.Errorf("postgres on port %d did not accept queries within 20 s: %v", s.Port, err))
		}
	}
}

func (s *Server) fatal(err error) {
	if s.t != nil {
		s.t.Helper()
		s.t.Fatal(err)
	}
	panic(err)
}

// Stop stops the server at once (an immediate shutdown: what a crash
// leaves) and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGQUIT)
		s.cmd.Wait()
		s.cmd = nil
	}
}

// Query runs sql through psql as the superuser and returns its output,
// unaligned, one row a line.
func (s *Server) Query(sql string) (string, error) {
	cmd := exec.Command(s.psql(), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-U", "postgres", "-d", "postgres", "-c", sql)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// psql finds psql: beside initdb, else on the PATH.
func (s *Server) psql() string {
	if p := filepath.Join(s.bin, "psql"); fileExists(p) {
		return p
	}
	if p, err := exec.LookPath("psql"); err == nil {
		return p
	}
	return "psql"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// MustQuery is Query, failing t on an error.
func (s *Server) MustQuery(t testing.TB, sql string) string {
	t.Helper()
	out, err := s.Query(sql)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var shared struct {
	once sync.Once
	s    *Server
	err  error
}

// Shared returns one server for the whole test binary, started by its first
// caller (which it skips, or fails under CI, without PostgreSQL); stop it
// with StopShared at the end of TestMain. Tests that share it keep apart
// with schemas of their own.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.once.Do(func() {
		shared.s, shared.err = start(nil)
	})
	if shared.err != nil {
		requireOrSkip(t, shared.err)
	}
	return shared.s
}

// StopShared stops the shared server, if one was started, and removes its
// files.
func StopShared() {
	if s := shared.s; s != nil {
		s.Stop()
		os.RemoveAll(s.dir)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// PgBouncer is a pgbouncer process in front of a Server, pooling in
// transaction mode: each transaction may run on another server connection,
// so nothing may rely on session state.
type PgBouncer struct {
	Port int
	cmd  *exec.Cmd
}

// DSN returns a connection string through the bouncer.
func (b *PgBouncer) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", b.Port)
}

// StartPgBouncer starts pgbouncer in transaction mode in front of s,
// stopped when the test ends; without pgbouncer the test skips, or fails
// under CI.
func (s *Server) StartPgBouncer(t testing.TB) *PgBouncer {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		bin = "/usr/sbin/pgbouncer"
		if !fileExists(bin) {
			if os.Getenv("CI") == "true" {
				t.Fatal("pgbouncer is not installed, and CI must run its tests (apt-get install -y pgbouncer)")
			}
			t.Skip("pgbouncer is not installed: apt-get install -y pgbouncer to run its tests")
		}
	}
	dir, err := os.MkdirTemp(s.dir, "pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	ini := fmt.Sprintf(`[databases]
postgres = host=127.0.0.1 port=%d dbname=postgres user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s/users.txt
pool_mode = transaction
default_pool_size = 5
max_client_conn = 200
logfile = %s/pgbouncer.log
pidfile = %s/pgbouncer.pid
`, s.Port, port, dir, dir, dir)
	for name, content := range map[string]string{"pgbouncer.ini": ini, "users.txt": `"postgres" ""` + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if s.cred != nil {
		for _, name := range []string{"", "pgbouncer.ini", "users.txt"} {
			os.Chown(filepath.Join(dir, name), int(s.cred.Uid), int(s.cred.Gid))
		}
	}
	b := &PgBouncer{Port: port}
	b.cmd = exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	if s.cred != nil {
		b.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	b.cmd.Stderr = os.Stderr
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.cmd.Process.Kill(); b.cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			conn.Close()
			return b
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			t.Fatalf("pgbouncer did not listen within 10 s:\n%s", log)
		}
	}
}
