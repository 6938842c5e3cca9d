package pgstore

import "time"

// SetChangeRetention sets how long s keeps the log of changes, and how
// long a watcher may go without reading it before it reports All: for
// tests that cannot wait a day. Call it before s is used.
func SetChangeRetention(s *Store, d time.Duration) { s.retention = d }

// Channel returns the channel on which s notifies changes.
func Channel(s *Store) string { return s.channel }
