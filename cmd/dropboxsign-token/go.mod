module github.com/dropboxsign-go/dropboxsign/cmd/dropboxsign-token

go 1.26.0

require (
	github.com/dropboxsign-go/dropboxsign v0.0.0
	golang.org/x/oauth2 v0.37.0
)

require golang.org/x/sync v0.24.0 // indirect

// Developed in one repository with the core module and the stores.
replace (
	github.com/dropboxsign-go/dropboxsign => ../../
	github.com/dropboxsign-go/dropboxsign/pgstore => ../../pgstore
	github.com/dropboxsign-go/dropboxsign/redisstore => ../../redisstore
)
