package redisstore

// SetSealPassKeys sets how many keys a pass of InspectSeals keeps, and
// returns a function that restores it.
func SetSealPassKeys(n int) (restore func()) {
	old := sealPassKeys
	sealPassKeys = n
	return func() { sealPassKeys = old }
}
