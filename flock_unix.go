//go:build unix

package dropboxsign

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"
)

// openNonBlock keeps an open of a FIFO from blocking until a writer comes;
// the store then refuses it as not a regular file.
const openNonBlock = syscall.O_NONBLOCK

// flock takes an exclusive flock on f, polling (flock cannot be
// interrupted) until it is free or ctx ends.
func flock(ctx context.Context, f *os.File) error {
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if err != syscall.EWOULDBLOCK && err != syscall.EINTR {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// checkOwner refuses a token directory that another user owns: that user
// could replace the token files in it.
func checkOwner(dir string, info os.FileInfo) error {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("dropboxsign: FileStore: cannot tell who owns token directory %s", dir)
	}
	if uid := os.Geteuid(); int64(st.Uid) != int64(uid) {
		return fmt.Errorf("dropboxsign: FileStore: token directory %s is owned by uid %d, not by this process's user (uid %d), and its owner could replace token files: choose a directory this user owns",
			dir, st.Uid, uid)
	}
	return nil
}
