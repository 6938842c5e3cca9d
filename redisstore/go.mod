module github.com/dropboxsign-go/dropboxsign/redisstore

go 1.26.0

require (
	github.com/dropboxsign-go/dropboxsign v0.0.0
	github.com/redis/go-redis/v9 v9.22.0
	golang.org/x/oauth2 v0.37.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	go.uber.org/atomic v1.11.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/sys v0.30.0 // indirect
)

// Developed in one repository with the core module.
replace github.com/dropboxsign-go/dropboxsign => ../
