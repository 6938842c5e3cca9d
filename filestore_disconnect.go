package dropboxsign

import (
	"context"
	"errors"
	"iter"
	"time"
)

// TODO(issue 19): FileStore's disconnection marks and watch; placeholders
// so that the package builds while they are written.

var errFileStoreTODO = errors.New("dropboxsign: FileStore: not yet")

// Disconnect is not yet.
func (f *FileStore) Disconnect(ctx context.Context, key string) error { return errFileStoreTODO }

// Forget is not yet.
func (f *FileStore) Forget(ctx context.Context, key string, before time.Time) error {
	return errFileStoreTODO
}

// Disconnected is not yet.
func (f *FileStore) Disconnected(ctx context.Context) iter.Seq2[*DisconnectedError, error] {
	return func(yield func(*DisconnectedError, error) bool) { yield(nil, errFileStoreTODO) }
}

// Watch is not yet.
func (f *FileStore) Watch(ctx context.Context, poll time.Duration, report func(Change)) {
	<-ctx.Done()
}
