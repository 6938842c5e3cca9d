module github.com/dropboxsign-go/dropboxsign

go 1.26.0

require golang.org/x/oauth2 v0.37.0

require golang.org/x/sync v0.24.0
