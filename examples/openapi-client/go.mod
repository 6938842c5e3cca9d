module github.com/dropboxsign-go/dropboxsign/examples/openapi-client

go 1.26.0

require (
	github.com/dropboxsign-go/dropboxsign v0.0.0
	github.com/oapi-codegen/runtime v1.8.0
)

require (
	github.com/apapsch/go-jsonmerge/v2 v2.0.0 // indirect
	github.com/google/uuid v1.6.0 // indirect
	golang.org/x/oauth2 v0.37.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
)

// Developed in one repository with the core module.
replace github.com/dropboxsign-go/dropboxsign => ../../
