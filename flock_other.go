//go:build !unix

package dropboxsign

import (
	"context"
	"errors"
)

func lockFile(context.Context, string) (func(), error) {
	return nil, errors.New("file locking (flock) is not available on this system")
}
