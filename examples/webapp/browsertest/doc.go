// Package browsertest drives the example app (examples/webapp) in a real
// browser: Debian's headless Chromium, through chromedp, against the app
// run as an OS process beside a fake Dropbox Sign (dropboxsigntest) that
// the tests count. It has tests only.
//
// The app is reached as http://app.test:PORT (the browser maps app.test to
// 127.0.0.1) and the fake as http://127.0.0.1:PORT: two sites, so the
// tests prove that Connect's SameSite=Lax state cookie comes back on the
// cross-site redirect from the consent page. They go through connect →
// Approve → connected → send a signature request → disconnect; Deny; a
// callback whose state was changed on its way, or whose browser lost the
// state cookie (400, no token request); the callback replayed in the same
// browser and in another user's (400, no second grant); and a double
// click on Connect (one grant).
//
// Run them from the repository's root:
//
//	go test -race -count=1 ./examples/webapp/browsertest/...
//
// Without Chromium (/usr/bin/chromium or chromium on the PATH; Debian:
// apt-get install chromium) they are skipped, except with CI=true, where
// they fail. With -screenshots DIR they write a screenshot of each page a
// user sees to DIR; docs/images/connect-flow holds them:
//
//	go test -count=1 ./examples/webapp/browsertest/... -screenshots "$PWD/docs/images/connect-flow"
package browsertest
