module github.com/dropboxsign-go/dropboxsign/examples/webapp

go 1.26.0

require (
	github.com/dropboxsign-go/dropboxsign v0.0.0
	github.com/dropboxsign-go/dropboxsign/pgstore v0.0.0
	github.com/jackc/pgx/v5 v5.12.0
	golang.org/x/oauth2 v0.37.0
)

require (
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/text v0.41.0 // indirect
)

// Developed in one repository with the core module.
replace github.com/dropboxsign-go/dropboxsign => ../../

replace github.com/dropboxsign-go/dropboxsign/pgstore => ../../pgstore
