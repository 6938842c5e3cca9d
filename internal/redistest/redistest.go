// Package redistest starts real redis-server processes on loopback ports
// for tests: one server, or a cluster of them. Without redis-server on the
// PATH a test skips, saying how to install it, except under CI (CI=true),
// where it fails. It needs no Redis client: readiness is a PING over TCP.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Server is one redis-server process on a free loopback port.
type Server struct {
	t    testing.TB
	Addr string
	Dir  string   // its working directory (cluster and append-only files)
	Args []string // extra arguments, kept across restarts
	cmd  *exec.Cmd
}

// Require skips t, or fails it under CI, when redis-server is missing.
func Require(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not installed, and CI must run the Redis tests (apt-get install -y redis-server)")
		}
		t.Skip("redis-server is not installed: apt-get install -y redis-server to run the Redis tests")
	}
}

// Start starts a redis-server with no persistence (unless args say
// otherwise), stopped when the test ends.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	Require(t)
	s := &Server{t: t, Addr: "127.0.0.1:" + strconv.Itoa(FreePort(t)), Dir: t.TempDir(), Args: args}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start starts the server (again) on its port and waits until it answers.
func (s *Server) Start() {
	s.t.Helper()
	_, port, _ := net.SplitHostPort(s.Addr)
	args := append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--protected-mode", "yes", "--dir", s.Dir}, s.Args...)
	s.cmd = exec.Command("redis-server", args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if Ping(s.Addr) == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s did not answer within 10 s", s.Addr)
		}
	}
}

// Stop kills the server and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// Ping sends PING to addr and expects PONG.
func Ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// Cluster is a Redis Cluster of servers on loopback: masters, each with
// its replicas.
type Cluster struct {
	t       testing.TB
	Servers []*Server
}

// StartCluster starts masters*(1+replicas) servers in cluster mode, creates
// the cluster (redis-cli --cluster create), and waits until every node says
// cluster_state:ok and every replica has synced. The servers stop when the
// test ends.
func StartCluster(t testing.TB, masters, replicas int) *Cluster {
	t.Helper()
	Require(t)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatal("redis-cli is not installed (Debian's redis-tools, a dependency of redis-server)")
	}
	c := &Cluster{t: t}
	var addrs []string
	for range masters * (1 + replicas) {
		s := Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
			"--cluster-replica-validity-factor", "0", "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0")
		c.Servers = append(c.Servers, s)
		addrs = append(addrs, s.Addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy()
	return c
}

// Addrs returns every node's address, for a ClusterClient to start from.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, s := range c.Servers {
		out = append(out, s.Addr)
	}
	return out
}

// Cmd runs a redis-cli command against the node at addr.
func Cmd(addr string, args ...string) (string, error) {
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command("redis-cli", append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// WaitHealthy waits until every running node says cluster_state:ok, knows
// every slot, and every replica's link to its master is up.
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range c.Servers {
		if s.cmd == nil {
			continue
		}
		for {
			info, _ := Cmd(s.Addr, "cluster", "info")
			repl, _ := Cmd(s.Addr, "info", "replication")
			if strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_slots_ok:16384") &&
				(strings.Contains(repl, "role:master") || strings.Contains(repl, "master_link_status:up")) {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("node %s not healthy within 30 s:\n%s\n%s", s.Addr, info, repl)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// MasterOf returns the node that serves key's slot now, and one of its
// replicas (nil if it has none).
func (c *Cluster) MasterOf(key string) (master, replica *Server) {
	c.t.Helper()
	var live string
	for _, s := range c.Servers {
		if s.cmd != nil {
			live = s.Addr
			break
		}
	}
	slot, err := Cmd(live, "cluster", "keyslot", key)
	if err != nil {
		c.t.Fatal(slot, err)
	}
	nodes, err := Cmd(live, "cluster", "nodes")
	if err != nil {
		c.t.Fatal(nodes, err)
	}
	n, _ := strconv.Atoi(slot)
	byID := map[string]*Server{}
	var masterID string
	lines := strings.Split(nodes, "\n")
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr := strings.SplitN(f[1], "@", 2)[0]
		for _, s := range c.Servers {
			if s.Addr == addr {
				byID[f[0]] = s
			}
		}
		if !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
			continue
		}
		for _, r := range f[8:] {
			lo, hi, _ := strings.Cut(r, "-")
			a, _ := strconv.Atoi(lo)
			b := a
			if hi != "" {
				b, _ = strconv.Atoi(hi)
			}
			if a <= n && n <= b {
				masterID = f[0]
			}
		}
	}
	for _, line := range lines {
		if f := strings.Fields(line); len(f) >= 4 && f[3] == masterID && !strings.Contains(f[2], "fail") {
			replica = byID[f[0]]
		}
	}
	return byID[masterID], replica
}
