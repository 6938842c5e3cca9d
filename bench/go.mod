module github.com/dropboxsign-go/dropboxsign/bench

go 1.26.0

// Developed in one repository with the core module.
replace (
	github.com/dropboxsign-go/dropboxsign => ../
	github.com/dropboxsign-go/dropboxsign/redisstore => ../redisstore
)

require (
	cloud.google.com/go/auth v0.24.3
	github.com/aws/aws-sdk-go-v2 v1.47.7
	github.com/dropboxsign-go/dropboxsign v0.0.0
	github.com/dropboxsign-go/dropboxsign/redisstore v0.0.0
	github.com/redis/go-redis/v9 v9.22.0
	golang.org/x/oauth2 v0.37.0
)

require (
	cloud.google.com/go/compute/metadata v0.10.0 // indirect
	github.com/aws/smithy-go v1.28.8 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/googleapis/gax-go/v2 v2.27.0 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
	go.uber.org/atomic v1.11.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)
