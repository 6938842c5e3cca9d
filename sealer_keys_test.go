package dropboxsign_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
)

func keysTestToken() *oauth2.Token {
	return &oauth2.Token{AccessToken: "access-secret-1234", TokenType: "Bearer", RefreshToken: "refresh-secret-5678",
		Expiry: time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC), ExpiresIn: 3600}
}

// A key's ID is the first 8 bytes of its SHA-256 in hex: 16 lowercase
// characters, the same for the same key in every process and release (the
// golden values pin it: a census taken by one version must name keys as
// the next one does), different for different keys, and not the key.
func TestKeyIDIsStableAndPrintable(t *testing.T) {
	for key, want := range map[string]string{
		string(oldKey): "72cd6e8422c407fb",
		string(newKey): "75877bb41d393b5f",
	} {
		got := dropboxsign.KeyID([]byte(key))
		if got != want {
			t.Errorf("KeyID = %q, want %q", got, want)
		}
		if strings.Contains(hex.EncodeToString([]byte(key)), got) || strings.Contains(base64.StdEncoding.EncodeToString([]byte(key)), got) {
			t.Errorf("KeyID %q shows the key", got)
		}
	}
	if dropboxsign.KeyID(oldKey) == dropboxsign.KeyID(newKey) {
		t.Error("two keys, one ID")
	}
	// A sealed token names its key by that ID.
	blob, err := mustSealer(t, newKey, oldKey).Seal("alice", keysTestToken())
	if err != nil {
		t.Fatal(err)
	}
	if st := mustSealer(t, oldKey).Inspect("alice", blob); st.KeyID != dropboxsign.KeyID(newKey) {
		t.Errorf("Inspect names the sealing key %q, want %q", st.KeyID, dropboxsign.KeyID(newKey))
	}
}

// KeyIDs lists the keys in the order given, the sealing key first, and
// the copies a Sealer makes keep them.
func TestKeyIDsInOrder(t *testing.T) {
	ab := mustSealer(t, oldKey, newKey)
	want := []string{dropboxsign.KeyID(oldKey), dropboxsign.KeyID(newKey)}
	for name, s := range map[string]*dropboxsign.Sealer{
		"sealer": ab, "OpenOnly": ab.OpenOnly(), "Retired": ab.Retired("0011223344556677"), "RefusePlaintext": ab.RefusePlaintext(),
	} {
		if got := s.KeyIDs(); !slices.Equal(got, want) {
			t.Errorf("%s: KeyIDs = %v, want %v", name, got, want)
		}
	}
	if got := mustSealer(t, newKey, oldKey).KeyIDs(); !slices.Equal(got, []string{want[1], want[0]}) {
		t.Errorf("KeyIDs of [new, old] = %v", got)
	}
	if got := (*dropboxsign.Sealer)(nil).KeyIDs(); len(got) != 0 {
		t.Errorf("nil Sealer: KeyIDs = %v", got)
	}
	if got := (&dropboxsign.Sealer{}).KeyIDs(); len(got) != 0 {
		t.Errorf("zero Sealer: KeyIDs = %v", got)
	}
}

// OpenOnly writes plain JSON (what a replica without keys reads), and
// opens tokens sealed under any of its keys and plain ones; the Sealer it
// was made from still seals. Made from a Sealer that refuses plaintext, it
// opens plain JSON: it writes it.
func TestOpenOnlyWritesPlainAndOpensBoth(t *testing.T) {
	tok := keysTestToken()
	full := mustSealer(t, newKey, oldKey)
	oo := full.OpenOnly()
	plain, err := oo.Seal("alice", tok)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(plain) || bytes.HasPrefix(plain, []byte("dbs1")) {
		t.Fatalf("OpenOnly wrote %q: want plain JSON", plain)
	}
	if got, err := (*dropboxsign.Sealer)(nil).Open("alice", plain); err != nil || got.RefreshToken != tok.RefreshToken {
		t.Errorf("a Sealer without keys reads what OpenOnly wrote: %v, %v", tokenText(got), err)
	}
	if sealed, _ := full.Sealed(plain); sealed {
		t.Error("OpenOnly's output reads as sealed")
	}
	if blob, _ := full.Seal("alice", tok); !bytes.HasPrefix(blob, []byte("dbs1")) {
		t.Error("the Sealer OpenOnly was made from no longer seals")
	}
	underNew, _ := mustSealer(t, newKey).Seal("alice", tok)
	underOld, _ := mustSealer(t, oldKey).Seal("alice", tok)
	for name, blob := range map[string][]byte{"plain": plain, "sealed under the first key": underNew, "sealed under the second key": underOld} {
		got, err := oo.Open("alice", blob)
		if err != nil || got.AccessToken != tok.AccessToken || got.RefreshToken != tok.RefreshToken || !got.Expiry.Equal(tok.Expiry) {
			t.Errorf("OpenOnly Open of %s: %v, %v", name, tokenText(got), err)
		}
	}
	strictOO := full.RefusePlaintext().OpenOnly()
	if got, err := strictOO.Open("alice", plain); err != nil || got.RefreshToken != tok.RefreshToken {
		t.Errorf("OpenOnly of a strict Sealer refuses plain JSON (which it writes): %v", err)
	}
	if out, _ := strictOO.Seal("alice", tok); !json.Valid(out) {
		t.Errorf("OpenOnly of a strict Sealer wrote %q", out)
	}
	// And the other way round: refusing plain JSON is the last step, so
	// the Sealer seals again rather than refuse what it writes.
	back := oo.RefusePlaintext()
	blob, err := back.Seal("alice", tok)
	if err != nil || !bytes.HasPrefix(blob, []byte("dbs1")) {
		t.Errorf("RefusePlaintext of an OpenOnly Sealer writes %q (%v): want sealed", blob, err)
	}
	if got, err := back.Open("alice", blob); err != nil || got.RefreshToken != tok.RefreshToken {
		t.Errorf("RefusePlaintext of an OpenOnly Sealer cannot open its own token: %v", err)
	}
	if _, err := back.Open("alice", plain); !errors.Is(err, dropboxsign.ErrPlaintextToken) {
		t.Errorf("RefusePlaintext of an OpenOnly Sealer, plain JSON: %v", err)
	}
}

// A plain token read by an OpenOnly store is what that store writes: no
// EventPlaintextToken (the full Sealer, the control, reports one), and the
// refresh writes plain JSON again, through both ways stores read tokens
// (a FileStore's own records, and Sealer.Open).
func TestOpenOnlyStoreReportsNoPlaintext(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	full := mustSealer(t, newKey)
	for _, tc := range []struct {
		name     string
		sealer   *dropboxsign.Sealer
		reported int
	}{
		{"OpenOnly", full.OpenOnly(), 0},
		{"sealer (control)", full, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			plainFiles, err := dropboxsign.NewFileStore(dir)
			if err != nil {
				t.Fatal(err)
			}
			files, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(tc.sealer))
			if err != nil {
				t.Fatal(err)
			}
			blobs := newBlobStore(tc.sealer)
			for _, st := range []struct {
				name  string
				store dropboxsign.Store
				plant func(tok *oauth2.Token)
				plain func() bool // what the store holds is in plain JSON
			}{
				{"FileStore", files, func(tok *oauth2.Token) {
					if err := plainFiles.Save(ctx, "alice", nil, tok); err != nil {
						t.Fatal(err)
					}
				}, func() bool {
					b, _ := os.ReadFile(files.Path("alice"))
					var rec struct{ Sealed []byte }
					json.Unmarshal(b, &rec)
					return rec.Sealed == nil || json.Valid(rec.Sealed)
				}},
				{"Sealer.Open", blobs, func(tok *oauth2.Token) {
					plain, _ := (*dropboxsign.Sealer)(nil).Seal("alice", tok)
					blobs.put("alice", plain)
				}, func() bool { return json.Valid(blobs.get("alice")) }},
			} {
				t.Run(st.name, func(t *testing.T) {
					st.plant(expired(srv.IssueToken())) // due: the call refreshes, reading the store twice
					rec := newRecorder()
					a := dropboxsign.NewAccounts(ctx, srv.Config(), st.store, rec.options()...)
					for range 3 {
						if _, err := a.TokenSource("alice").TokenContext(ctx); err != nil {
							t.Fatal(err)
						}
					}
					// Events come in order: once the refresh's is in, so is
					// any report of the load before it.
					rec.waitFor(t, dropboxsign.EventTokenRequest, 1)
					if n := len(rec.of(dropboxsign.EventPlaintextToken)); n != tc.reported {
						t.Errorf("%d plaintext reports, want %d", n, tc.reported)
					}
					if plain := st.plain(); plain != (tc.reported == 0) {
						t.Errorf("after the refresh the store holds plain JSON: %v, want %v", plain, tc.reported == 0)
					}
				})
			}
		})
	}
}

// A token sealed under a key the Sealer lacks fails with a
// *MissingKeyError naming the key's ID, classed Misconfigured; Retired
// tells an older key removed from "a key not configured here", in the
// error and its text; the Sealer Retired was made from is unchanged. A
// Sealer without keys meeting a sealed token says so, the same way.
func TestMissingKeyAndRetired(t *testing.T) {
	tok := keysTestToken()
	blob, _ := mustSealer(t, oldKey).Seal("alice", tok)
	onlyNew := mustSealer(t, newKey)
	id := dropboxsign.KeyID(oldKey)
	check := func(name string, s *dropboxsign.Sealer, retired bool, text string) {
		t.Helper()
		_, err := s.Open("alice", blob)
		var mk *dropboxsign.MissingKeyError
		if !errors.As(err, &mk) || mk.KeyID != id || mk.Retired != retired {
			t.Errorf("%s: %#v (%v); want a MissingKeyError for %s, Retired %v", name, mk, err, id, retired)
			return
		}
		if c := dropboxsign.Classify(err); c != dropboxsign.Misconfigured {
			t.Errorf("%s: classed %v", name, c)
		}
		msg := err.Error()
		if !strings.Contains(msg, id) || !strings.Contains(msg, text) || strings.Contains(msg, "secret-") || strings.Contains(msg, hex.EncodeToString(oldKey)) {
			t.Errorf("%s: %q; want the key ID and %q, no secret", name, msg, text)
		}
	}
	check("not retired", onlyNew, false, "not configured here and not known as retired")
	check("retired", onlyNew.Retired(id), true, "an older key no longer configured")
	check("retired, as typed", onlyNew.Retired(" "+strings.ToUpper(id)+" "), true, "older key")
	check("another key retired", onlyNew.Retired(dropboxsign.KeyID(newKey)), false, "not known as retired")
	check("the Sealer Retired was made from", onlyNew, false, "not known as retired")
	check("no keys", nil, false, "no encryption keys are configured")
	if got := (*dropboxsign.Sealer)(nil).Retired(id); got != nil {
		t.Errorf("nil.Retired = %v, want nil (plain JSON)", got)
	}
	// A key given back opens it again.
	if got, err := mustSealer(t, newKey, oldKey).Retired(id).Open("alice", blob); err != nil || got.RefreshToken != tok.RefreshToken {
		t.Errorf("Retired does not stop a configured key: %v", err)
	}
}

// Inspect tells how every kind of blob is kept, and whether the Sealer
// opens it, without the token.
func TestInspect(t *testing.T) {
	tok := keysTestToken()
	plain, _ := (*dropboxsign.Sealer)(nil).Seal("alice", tok)
	underNew, _ := mustSealer(t, newKey).Seal("alice", tok)
	underOld, _ := mustSealer(t, oldKey).Seal("alice", tok)
	third := bytes.Repeat([]byte{3}, 32)
	underThird, _ := mustSealer(t, third).Seal("alice", tok)
	tampered := bytes.Clone(underNew)
	tampered[len(tampered)-1] ^= 1
	otherAccount, _ := mustSealer(t, newKey).Seal("bob", tok)
	notAToken := []byte(`{"hello":"world"}`)
	truncated := append([]byte("dbs1"), 1, 2, 3)
	rotated := mustSealer(t, newKey, oldKey)
	newID, oldID, thirdID := dropboxsign.KeyID(newKey), dropboxsign.KeyID(oldKey), dropboxsign.KeyID(third)
	var missing *dropboxsign.MissingKeyError
	isMissing := func(err error) bool { return errors.As(err, &missing) }
	opens := func(err error) bool { return err == nil }
	fails := func(err error) bool {
		return err != nil && !isMissing(err) && !strings.Contains(err.Error(), "secret-")
	}
	for _, tc := range []struct {
		name    string
		sealer  *dropboxsign.Sealer
		blob    []byte
		plain   bool
		keyID   string
		current bool
		err     func(error) bool
	}{
		{"plain", rotated, plain, true, "", false, opens},
		{"current", rotated, underNew, false, newID, true, opens},
		{"old key", rotated, underOld, false, oldID, false, opens},
		{"missing key", rotated, underThird, false, thirdID, false, isMissing},
		{"tampered", rotated, tampered, false, newID, false, fails}, // not Current: it does not open
		{"other account", rotated, otherAccount, false, newID, false, fails},
		{"not a token", rotated, notAToken, true, "", false, fails},
		{"truncated", rotated, truncated, false, "", false, fails},
		{"plain, strict", rotated.RefusePlaintext(), plain, true, "", false, func(err error) bool { return errors.Is(err, dropboxsign.ErrPlaintextToken) }},
		{"plain, OpenOnly", rotated.OpenOnly(), plain, true, "", true, opens},
		{"current key, OpenOnly", rotated.OpenOnly(), underNew, false, newID, false, opens},
		{"plain, nil Sealer", nil, plain, true, "", true, opens},
		{"sealed, nil Sealer", nil, underNew, false, newID, false, isMissing},
	} {
		got := tc.sealer.Inspect("alice", tc.blob)
		if got.Plain != tc.plain || got.KeyID != tc.keyID || got.Current != tc.current || !tc.err(got.Err) {
			t.Errorf("%s: %+v; want plain %v, key %q, current %v", tc.name, got, tc.plain, tc.keyID, tc.current)
		}
	}
	if st := rotated.RefusePlaintext().InspectPlain(); !st.Plain || st.Current || !errors.Is(st.Err, dropboxsign.ErrPlaintextToken) {
		t.Errorf("InspectPlain, strict: %+v", st)
	}
	if st := rotated.OpenOnly().InspectPlain(); !st.Plain || !st.Current || st.Err != nil {
		t.Errorf("InspectPlain, OpenOnly: %+v", st)
	}
}

// ParseSealKeys reads the operator's list: base64 in either alphabet,
// padded or not, spaces around; it refuses empty entries and keys of the
// wrong length, naming the position and never the text.
func TestParseSealKeys(t *testing.T) {
	urlKey := bytes.Repeat([]byte{0xfb, 0xff}, 16) // '-' and '_' in the URL alphabet, '+' and '/' in the standard one
	std, url := base64.StdEncoding.EncodeToString(urlKey), base64.URLEncoding.EncodeToString(urlKey)
	rawStd, rawURL := base64.RawStdEncoding.EncodeToString(newKey), base64.RawURLEncoding.EncodeToString(oldKey)
	for _, tc := range []struct {
		list string
		want [][]byte
	}{
		{std, [][]byte{urlKey}},
		{url, [][]byte{urlKey}},
		{rawStd + "," + rawURL, [][]byte{newKey, oldKey}},
		{" " + base64.StdEncoding.EncodeToString(newKey) + " ,\t" + url + "\n", [][]byte{newKey, urlKey}},
		{strings.TrimRight(url, "="), [][]byte{urlKey}},
	} {
		got, err := dropboxsign.ParseSealKeys(tc.list)
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("ParseSealKeys(#%d): %d keys, %v", len(tc.list), len(got), err)
			continue
		}
		for i := range got {
			if !bytes.Equal(got[i], tc.want[i]) {
				t.Errorf("ParseSealKeys: key %d differs", i+1)
			}
		}
	}
	short := base64.StdEncoding.EncodeToString(newKey[:16])
	long := base64.StdEncoding.EncodeToString(append(bytes.Clone(newKey), 9))
	secretish := "c2VjcmV0LWtleS10ZXh0LWRvLW5vdC1wcmludA" // base64 of 28 bytes
	for _, tc := range []struct {
		list, want string
	}{
		{"", "no encryption keys"},
		{"  ", "no encryption keys"},
		{std + ",", "key 2 of the list is empty"},
		{std + ",," + url, "key 2 of the list is empty"},
		{short, "key 1 of the list has 16 bytes, want 32"},
		{std + "," + long, "key 2 of the list has 33 bytes, want 32"},
		{secretish, "has 28 bytes"},
		{"not base64 at all!", "key 1 of the list is not base64"},
		{std + ",secret+key_mixed", "key 2 of the list is not base64"},
		{hex.EncodeToString(newKey), "key 1 of the list"},
	} {
		keys, err := dropboxsign.ParseSealKeys(tc.list)
		if err == nil || keys != nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSealKeys: %v; want an error with %q", err, tc.want)
			continue
		}
		for _, field := range strings.Split(tc.list, ",") {
			if field = strings.TrimSpace(field); len(field) >= 8 && strings.Contains(err.Error(), field) {
				t.Errorf("the error %q holds the key's text", err)
			}
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("the error %q holds the key's text", err)
		}
	}
	keys, err := dropboxsign.ParseSealKeys(rawStd + "," + rawURL)
	if err != nil {
		t.Fatal(err)
	}
	if ids := mustSealer(t, keys...).KeyIDs(); !slices.Equal(ids, []string{dropboxsign.KeyID(newKey), dropboxsign.KeyID(oldKey)}) {
		t.Errorf("the parsed keys' IDs: %v", ids)
	}
}

// A nil Sealer (plain JSON) and a zero one (no keys) answer every method
// without a panic: errors where they cannot do what is asked.
func TestNilAndZeroSealersDoNotPanic(t *testing.T) {
	tok := keysTestToken()
	sealed, _ := mustSealer(t, newKey).Seal("alice", tok)
	plain, _ := (*dropboxsign.Sealer)(nil).Seal("alice", tok)
	for name, s := range map[string]*dropboxsign.Sealer{"nil": nil, "zero": {}} {
		for _, c := range []*dropboxsign.Sealer{s, s.OpenOnly(), s.Retired("0011223344556677"), s.RefusePlaintext()} {
			c.KeyIDs()
			c.Seal("alice", tok)
			c.Seal("alice", nil)
			c.Sealed(sealed)
			c.Sealed(nil)
			for _, blob := range [][]byte{sealed, plain, nil, []byte("dbs1"), {}} {
				if _, err := c.Open("alice", blob); err != nil && strings.Contains(err.Error(), "secret-") {
					t.Errorf("%s: %v", name, err)
				}
				c.Inspect("alice", blob)
			}
			c.InspectPlain()
		}
		if _, err := s.Open("alice", sealed); err == nil {
			t.Errorf("%s Sealer opened a sealed token", name)
		}
		if got, err := s.Open("alice", plain); err != nil || got.RefreshToken != tok.RefreshToken {
			t.Errorf("%s Sealer: plain JSON: %v", name, err)
		}
		if got, err := s.OpenOnly().Seal("alice", tok); err != nil || !json.Valid(got) {
			t.Errorf("%s Sealer, OpenOnly: Seal: %v", name, err)
		}
	}
	if _, err := (&dropboxsign.Sealer{}).Seal("alice", tok); err == nil {
		t.Error("a zero Sealer sealed without a key")
	}
}
