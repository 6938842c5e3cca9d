module github.com/dropboxsign-go/dropboxsign/examples/webapp/browsertest

go 1.26.0

// Developed in one repository with the core module.
replace github.com/dropboxsign-go/dropboxsign => ../../../

require (
	github.com/chromedp/cdproto v0.160.1
	github.com/chromedp/chromedp v0.23.1
	github.com/dropboxsign-go/dropboxsign v0.0.0
)

require (
	github.com/go-json-experiment/json v0.0.0-20260213210345-44df1a37e875 // indirect
	golang.org/x/oauth2 v0.37.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
)
