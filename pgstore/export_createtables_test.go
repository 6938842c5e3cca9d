package pgstore

// CreateTablesLockKey returns the advisory lock key that CreateTables
// takes for opts' tables.
func CreateTablesLockKey(opts Options) int64 { return createTablesLockKey(opts) }
