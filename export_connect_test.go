package dropboxsign

import "time"

// SetConnectClock replaces c's clock, for tests of expiry.
func SetConnectClock(c *Connect, now func() time.Time) { c.now = now }
