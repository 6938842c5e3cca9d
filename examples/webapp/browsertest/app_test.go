package browsertest

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

// screenshotDir, when set, is where the tests write their screenshots under
// stable names (01-home.png, ...), for docs/images/connect-flow.
var screenshotDir = flag.String("screenshots", "", "write each page's screenshot to this directory under a stable name")

// appHost is the app's host name as the browser sees it: another site than
// the fake's 127.0.0.1, so that the state cookie must survive a cross-site
// redirect back from the consent page. The browser maps it to 127.0.0.1.
const appHost = "app.test"

// appName is the API app's name the fake's consent page shows.
const appName = "Example app"

// The webapp's binary, built once per test binary (buildApp).
var (
	buildDir  string
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "browsertest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildApp builds examples/webapp once; go.work resolves the module.
func buildApp(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		bin := buildDir + "/webapp"
		out, err := exec.Command("go", "build", "-o", bin, "github.com/dropboxsign-go/dropboxsign/examples/webapp").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build examples/webapp: %v\n%s", err, out)
			return
		}
		buildBin = bin
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// webapp is the example app running as an OS process beside a fake
// Dropbox Sign that this test process counts.
type webapp struct {
	URL  string // http://app.test:port
	Fake *dropboxsigntest.Server
}

// CallbackPath is the app's callback route (the API app's callback URL).
const callbackPath = "/dropbox-sign/callback"

// startApp starts a fake Dropbox Sign and the webapp against it, and stops
// both when t ends.
func startApp(t *testing.T) *webapp {
	t.Helper()
	bin := buildApp(t)
	fake := dropboxsigntest.NewServer()
	fake.AppName = appName
	t.Cleanup(fake.Close)
	store := t.TempDir()
	// A free port can be taken between its probe and the app's listen:
	// then the app exits, and we try another.
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		appURL := "http://" + appHost + ":" + strconv.Itoa(port)
		err = startProcess(t, bin, []string{
			"-addr", "127.0.0.1:" + strconv.Itoa(port),
			"-url", appURL,
			"-dropbox-sign", fake.URL,
			"-store", store,
		}, []string{
			"DROPBOX_SIGN_CLIENT_ID=" + fake.ClientID,
			"DROPBOX_SIGN_CLIENT_SECRET=" + fake.ClientSecret,
		})
		if err == nil {
			fake.SetCallbackURL(appURL + callbackPath)
			return &webapp{URL: appURL, Fake: fake}
		}
		if !errors.Is(err, errAddrInUse) {
			t.Fatal(err)
		}
		lastErr = err
	}
	t.Fatalf("the webapp found no free port: %v", lastErr)
	return nil
}

var errAddrInUse = errors.New("address already in use")

// startProcess runs the webapp and waits until it prints its "webapp: open"
// line, or exits. At t's end it sends SIGTERM and waits (SIGKILL after a
// generous time); if t failed, the app's stderr goes to the test's log.
func startProcess(t *testing.T, bin string, args, env []string) error {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signaled := false
		for sc.Scan() {
			if !signaled && strings.HasPrefix(sc.Text(), "webapp: open ") {
				close(ready)
				signaled = true
			}
		}
		io.Copy(io.Discard, stdout) // keep draining past a long line
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	hang := time.NewTimer(2 * time.Minute) // a hang guard, not a verdict
	defer hang.Stop()
	select {
	case <-ready:
	case err := <-exited:
		if strings.Contains(stderr.String(), "address already in use") {
			return fmt.Errorf("%w: %s", errAddrInUse, stderr.String())
		}
		return fmt.Errorf("the webapp exited before it was ready (%v): %s", err, stderr.String())
	case <-hang.C:
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("the webapp did not print its URL in 2 minutes: %s", stderr.String())
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		kill := time.NewTimer(time.Minute)
		defer kill.Stop()
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("the webapp exited with %v after SIGTERM", err)
			}
		case <-kill.C:
			cmd.Process.Kill()
			<-exited
			t.Errorf("the webapp did not stop within a minute of SIGTERM")
		}
		if t.Failed() {
			t.Logf("the webapp's stderr:\n%s", stderr.String())
		}
	})
	return nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// lockedBuffer is a bytes.Buffer safe for the process's writes and the
// test's reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
