package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/pgstore"
	"github.com/dropboxsign-go/dropboxsign/redisstore"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// Environment variables of the store and its keys, named in the flags'
// help and in docs/cli.md. The keys have no flag: flags show in ps.
const (
	envStore      = "DROPBOX_SIGN_STORE"
	envSealKeys   = "DROPBOX_SIGN_SEAL_KEYS"
	envRetiredIDs = "DROPBOX_SIGN_RETIRED_KEY_IDS"
)

// connectTimeout bounds the first contact with a Redis or PostgreSQL store:
// a wrong host must not hang a command.
const connectTimeout = 10 * time.Second

// storeFlags registers -dir, -store, -prefix and -schema: where the tokens
// are.
func (s *settings) storeFlags() {
	s.dirFlag()
	s.fs.StringVar(&s.store, "store", "", "the token `store`: file:DIR (or a directory), redis://…, rediss://… (TLS),\n"+
		"redis+cluster://HOST:PORT,HOST:PORT/… (or rediss+cluster://), postgres://…\n"+
		"(env "+envStore+"; prefer it for a URL with a password: flags show\n"+
		"in ps; default: the token directory, -dir)")
	s.fs.StringVar(&s.prefix, "prefix", "", "Redis: the `prefix` of the store's keys (default dropboxsign:);\n"+
		"PostgreSQL: of its tables' names (default dropboxsign_)")
	s.fs.StringVar(&s.schema, "schema", "", "PostgreSQL: the `schema` of the store's tables (default public)")
	s.fromEnv(&s.store, "store", envStore)
}

// storeKind is the kind of store a -store value names.
type storeKind int

const (
	fileStore storeKind = iota
	redisStore
	redisClusterStore
	postgresStore
)

// storeSpec is a parsed -store value.
type storeSpec struct {
	kind storeKind
	dir  string // fileStore
	url  string // the others: as given
	// where names the store in messages: the directory, or the URL with
	// its password hidden.
	where string
}

// parseStore reads a -store value. A value without a scheme is a
// directory, as -dir is.
func (s *settings) parseStore() (storeSpec, error) {
	v := s.store
	origin := "-store"
	if !s.fs.given("store") {
		origin = envStore
	}
	switch {
	case s.fs.given("store") && s.fs.given("dir"):
		return storeSpec{}, usagef("-store and -dir both name a store: give one")
	case !s.fs.given("store") && !s.fs.given("dir") && v != "" && s.dir != "":
		return storeSpec{}, usagef("%s and %s are both set: unset one (or pass -store or -dir)", envStore, envDir)
	case v == "" || s.fs.given("dir"):
		dir, err := s.tokenDir()
		return storeSpec{kind: fileStore, dir: dir, where: dir}, err
	}
	noteQuerySecrets(v)
	if libpqString.MatchString(v) {
		// Not shown: it may hold a password.
		return storeSpec{}, usagef("%s looks like a PostgreSQL key=value connection string (host=… dbname=…), not a store: write it as a URL, postgres://USER:PASSWORD@HOST:PORT/DATABASE[?sslmode=…]", origin)
	}
	scheme, rest, hasScheme := strings.Cut(v, ":")
	if !hasScheme || strings.ContainsAny(scheme, `/\.`) || len(scheme) == 1 { // a path, or C:\ on Windows
		return storeSpec{kind: fileStore, dir: v, where: v}, nil
	}
	switch strings.ToLower(scheme) {
	case "file":
		dir := strings.TrimPrefix(rest, "//")
		if dir == "" {
			return storeSpec{}, usagef("%s %q names no directory: write file:DIR", origin, v)
		}
		return storeSpec{kind: fileStore, dir: dir, where: dir}, nil
	case "redis", "rediss":
		u, err := url.Parse(v)
		if err != nil || u.Host == "" {
			return storeSpec{}, usagef("%s %q is not a Redis URL: write redis://[USER:PASSWORD@]HOST:PORT[/DB]", origin, redactURL(v))
		}
		noteSecret(u, true)
		if _, err := redis.ParseURL(v); err != nil {
			return storeSpec{}, usagef("%s %s: %s", origin, shownURL(u), redisReason(err))
		}
		return storeSpec{kind: redisStore, url: v, where: shownURL(u)}, nil
	case "redis+cluster", "rediss+cluster":
		native, where, err := clusterURL(v)
		if err != nil {
			return storeSpec{}, usagef("%s %q: %v", origin, redactURL(v), err)
		}
		if _, err := redis.ParseClusterURL(native); err != nil {
			return storeSpec{}, usagef("%s %s: %s", origin, where, redisReason(err))
		}
		return storeSpec{kind: redisClusterStore, url: native, where: where}, nil
	case "postgres", "postgresql":
		u, err := url.Parse(v)
		if err != nil {
			return storeSpec{}, usagef("%s %q is not a PostgreSQL URL: write postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=…]", origin, redactURL(v))
		}
		noteSecret(u, false)
		if _, err := pgxpool.ParseConfig(v); err != nil {
			// Not pgx's text: it repeats the URL, whose password it hides
			// on a best-effort basis only.
			return storeSpec{}, usagef("%s %s is not a valid PostgreSQL connection URL (a misspelt parameter, a bad port or sslmode?)", origin, shownURL(u))
		}
		return storeSpec{kind: postgresStore, url: v, where: shownURL(u)}, nil
	}
	return storeSpec{}, usagef("%s %q: unknown store %q: use file:DIR, redis://, rediss://, redis+cluster://, rediss+cluster:// or postgres://", origin, redactURL(v), scheme+":")
}

// redisReason is go-redis's reason a URL is refused, which names an option
// or the scheme, never the password.
func redisReason(err error) string {
	return strings.TrimPrefix(err.Error(), "redis: ")
}

// clusterURL turns redis+cluster://[USER:PASSWORD@]HOST:PORT,HOST:PORT[/][?…]
// into go-redis's cluster URL (redis://…@HOST:PORT?addr=HOST:PORT…), and
// the form to show.
func clusterURL(v string) (native, where string, err error) {
	scheme, rest, _ := strings.Cut(v, "://")
	scheme = strings.TrimSuffix(strings.ToLower(scheme), "+cluster")
	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	userinfo, hosts := "", authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, hosts = authority[:i+1], authority[i+1:]
	}
	path, query, _ := strings.Cut(tail, "?")
	if path != "" && path != "/" {
		return "", "", errors.New("a Redis Cluster has only database 0: no /DB in the URL")
	}
	var addrs []string
	for h := range strings.SplitSeq(hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			addrs = append(addrs, h)
		}
	}
	if len(addrs) == 0 {
		return "", "", errors.New("no node address: write redis+cluster://HOST:PORT[,HOST:PORT…]")
	}
	u, err := url.Parse(scheme + "://" + userinfo + addrs[0] + "/?" + query)
	if err != nil {
		return "", "", errors.New("not a URL: write redis+cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…][?OPTION=VALUE…]")
	}
	noteSecret(u, true)
	q := u.Query()
	for _, a := range addrs[1:] {
		q.Add("addr", a)
	}
	u.Path, u.RawQuery = "", q.Encode()
	shown := *u
	shown.Host, shown.RawQuery = strings.Join(addrs, ","), query
	return u.String(), scheme + "+cluster://" + strings.TrimPrefix(shownURL(&shown), scheme+"://"), nil
}

// redactURL hides what may be a password in a string that did not parse
// as a URL: everything between "://" and the last "@", and the values of
// its query parameters (see hideQuery).
func redactURL(v string) string {
	scheme, rest, ok := strings.Cut(v, "://")
	if !ok {
		if scheme, rest, ok = strings.Cut(v, ":"); ok && strings.Contains(rest, "@") {
			return scheme + ":xxxxx"
		}
		return hideQueryOf(v)
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest = "xxxxx" + rest[i:]
	}
	return scheme + "://" + hideQueryOf(rest)
}

// shownURL is u as messages show it: its whole user info hidden (a user
// name may be a password: redis://PASSWORD@HOST), and the values of its
// query parameters that may be secrets (see hideQuery).
func shownURL(u *url.URL) string {
	c := *u
	if c.Opaque != "" { // postgres:USER:PASSWORD@HOST, which is no URL of a host
		return c.Scheme + ":xxxxx"
	}
	if c.User != nil {
		c.User = url.User("xxxxx")
	}
	c.RawQuery = hideQuery(c.RawQuery)
	c.Fragment, c.RawFragment = "", ""
	return c.String()
}

// hideQueryOf hides the values of the query of v, a URL's tail, and drops
// its fragment.
func hideQueryOf(v string) string {
	v, _, _ = strings.Cut(v, "#")
	head, query, ok := strings.Cut(v, "?")
	if !ok {
		return v
	}
	return head + "?" + hideQuery(query)
}

// harmlessParams are the query parameters of go-redis's and pgx's URLs
// whose values messages show: none of them is a secret. Any other
// parameter's value (password=, sslpassword=, a misspelt one) is hidden.
var harmlessParams = map[string]bool{
	// PostgreSQL (libpq and pgx)
	"sslmode": true, "connect_timeout": true, "application_name": true, "target_session_attrs": true,
	"sslrootcert": true, "sslcert": true, "sslnegotiation": true, "sslsni": true, "search_path": true,
	"pool_max_conns": true, "pool_min_conns": true, "pool_max_conn_lifetime": true, "pool_max_conn_idle_time": true,
	"pool_health_check_period": true, "statement_cache_capacity": true, "default_query_exec_mode": true,
	// go-redis
	"addr": true, "db": true, "protocol": true, "client_name": true, "dial_timeout": true, "read_timeout": true,
	"write_timeout": true, "pool_fifo": true, "pool_size": true, "pool_timeout": true, "min_idle_conns": true,
	"max_idle_conns": true, "max_active_conns": true, "conn_max_idle_time": true, "conn_max_lifetime": true,
	"idle_timeout": true, "max_conn_age": true, "max_retries": true, "min_retry_backoff": true,
	"max_retry_backoff": true, "skip_verify": true, "max_redirects": true, "read_only": true,
	"route_by_latency": true, "route_randomly": true,
}

// hideQuery replaces the value of each parameter of a raw query that is
// not harmless (harmlessParams) with xxxxx, keeping the names and their
// order: a message can still name a misspelt option.
func hideQuery(raw string) string {
	if raw == "" {
		return raw
	}
	parts := strings.Split(raw, "&")
	for i, p := range parts {
		name, _, hasValue := strings.Cut(p, "=")
		if !hasValue {
			continue
		}
		if n, err := url.QueryUnescape(name); err == nil && harmlessParams[strings.ToLower(n)] {
			continue
		}
		parts[i] = name + "=xxxxx"
	}
	return strings.Join(parts, "&")
}

// libpqString matches a PostgreSQL key=value connection string ("host=H
// password=P dbname=D"): not a directory, and not taken.
var libpqString = regexp.MustCompile(`(?i)(^|\s)(host|hostaddr|port|dbname|user|password|passfile|sslmode|sslpassword|service|connect_timeout|application_name|options|target_session_attrs)\s*=`)

// passwordParam matches a password given as a parameter: in a URL's query
// (postgres://U@H/D?password=P) or a key=value string (password=P or
// password='P').
var passwordParam = regexp.MustCompile(`(?i)pass(?:word)?\s*=\s*('(?:[^'\\]|\\.)*'|[^&\s#]+)`)

// noteQuerySecrets records, as secrets, the values of every password
// parameter in a store value, as given and unescaped.
func noteQuerySecrets(v string) {
	for _, m := range passwordParam.FindAllStringSubmatch(v, -1) {
		p := m[1]
		if len(p) >= 2 && p[0] == '\'' && p[len(p)-1] == '\'' {
			p = strings.ReplaceAll(strings.ReplaceAll(p[1:len(p)-1], `\'`, `'`), `\\`, `\`)
		}
		addSecret(p)
		if u, err := url.QueryUnescape(p); err == nil && u != p {
			addSecret(u)
		}
	}
}

// sealer is the Sealer that DROPBOX_SIGN_SEAL_KEYS and
// DROPBOX_SIGN_RETIRED_KEY_IDS describe: nil (plain JSON) without keys.
func (s *settings) sealer() (*dropboxsign.Sealer, error) {
	list, retired := os.Getenv(envSealKeys), os.Getenv(envRetiredIDs)
	if list == "" {
		if strings.TrimSpace(retired) != "" {
			return nil, usagef("%s is set but %s is not: retired keys mean something only beside the keys in use", envRetiredIDs, envSealKeys)
		}
		return nil, nil
	}
	for _, k := range strings.Split(list, ",") {
		if k = strings.TrimSpace(k); k != "" {
			addSecret(k)
		}
	}
	keys, err := dropboxsign.ParseSealKeys(list)
	if err != nil {
		return nil, usagef("%s: %s (the keys are base64, 32 bytes each, separated by commas, the one that seals first)",
			envSealKeys, strings.TrimPrefix(err.Error(), "dropboxsign: "))
	}
	sealer, err := dropboxsign.NewSealer(keys...)
	if err != nil {
		return nil, usagef("%s: %s", envSealKeys, strings.TrimPrefix(err.Error(), "dropboxsign: "))
	}
	var ids []string
	for i, id := range strings.Split(retired, ",") {
		id = strings.ToLower(strings.TrimSpace(id))
		if id == "" {
			continue
		}
		if b, err := hex.DecodeString(id); err != nil || len(b) != 8 {
			// Never quoted: it may be a key itself (the runbook names keys
			// and their IDs side by side).
			raw := strings.TrimSpace(strings.Split(retired, ",")[i])
			addSecret(raw)
			hint := ""
			if looksLikeKey(raw) {
				hint = ": this looks like an encryption key, not a key ID (dropboxsign-token keys prints IDs)"
			}
			return nil, usagef("%s: entry %d of the list (%d characters) is not a key ID (16 hexadecimal digits, as 'dropboxsign-token keys' prints them)%s",
				envRetiredIDs, i+1, len(raw), hint)
		}
		ids = append(ids, id)
	}
	if len(ids) > 0 {
		sealer = sealer.Retired(ids...)
	}
	return sealer, nil
}

// looksLikeKey reports whether v decodes, as base64 or hex, to 32 bytes:
// an encryption key's size.
func looksLikeKey(v string) bool {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(v); err == nil && len(b) == 32 {
			return true
		}
	}
	b, err := hex.DecodeString(v)
	return err == nil && len(b) == 32
}

// opened is an open store.
type opened struct {
	dropboxsign.Lister
	file  *dropboxsign.FileStore // a token directory; nil for Redis and PostgreSQL
	where string                 // the directory, or the URL with its password hidden
	close func()
}

// errNoDir: the token directory does not exist, so nothing is stored.
var errNoDir = errors.New("no token directory")

// openStore opens the store, its tokens sealed and opened with the keys of
// DROPBOX_SIGN_SEAL_KEYS. Of a token directory, only login creates it:
// reading commands report errNoDir (wrapped, with the path) instead; the
// returned store still says where. Redis and PostgreSQL are reached once
// here, so that a wrong address fails at once, naming the store.
func (s *settings) openStore(create bool) (*opened, error) {
	spec, err := s.parseStore()
	if err != nil {
		return nil, err
	}
	switch {
	case s.prefix != "" && spec.kind == fileStore:
		return nil, usagef("-prefix is for a Redis or PostgreSQL store, and the store is the directory %s", spec.where)
	case s.schema != "" && spec.kind != postgresStore:
		return nil, usagef("-schema is for a PostgreSQL store, and the store is %s", spec.where)
	}
	sealer, err := s.sealer()
	if err != nil {
		return nil, err
	}
	o := &opened{where: spec.where, close: func() {}}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	switch spec.kind {
	case fileStore:
		if !create {
			if _, err := os.Stat(spec.dir); errors.Is(err, fs.ErrNotExist) {
				return o, fmt.Errorf("%w: %s does not exist", errNoDir, spec.dir)
			}
		}
		var opts []dropboxsign.FileStoreOption
		if sealer != nil {
			opts = append(opts, dropboxsign.WithSealer(sealer))
		}
		f, err := dropboxsign.NewFileStore(spec.dir, opts...)
		if err != nil {
			return nil, err
		}
		o.Lister, o.file = f, f
	case redisStore, redisClusterStore:
		// go-redis logs each failed dial on stderr; the command says once
		// what failed.
		redis.SetLogger(quietRedis{})
		var client redis.UniversalClient
		if spec.kind == redisStore {
			opts, _ := redis.ParseURL(spec.url) // parseStore checked it
			client = redis.NewClient(opts)
		} else {
			opts, _ := redis.ParseClusterURL(spec.url)
			client = redis.NewClusterClient(opts)
		}
		if err := client.Ping(ctx).Err(); err != nil {
			client.Close()
			return nil, fmt.Errorf("cannot reach the Redis store %s: is it the right address, and up?\n(%v)", spec.where, err)
		}
		st, err := redisstore.New(client, redisstore.Options{Prefix: s.prefix, Sealer: sealer})
		if err != nil {
			client.Close()
			return nil, usageError{err.Error()}
		}
		o.Lister, o.close = st, func() { client.Close() }
	case postgresStore:
		cfg, _ := pgxpool.ParseConfig(spec.url) // parseStore checked it
		cfg.MaxConns = 4
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err == nil {
			err = pool.Ping(ctx)
		}
		if err != nil {
			if pool != nil {
				pool.Close()
			}
			return nil, fmt.Errorf("cannot reach the PostgreSQL store %s: is it the right address, and up, and are the user and password right?\n(%v)", spec.where, err)
		}
		opts := pgstore.Options{Schema: s.schema, TablePrefix: s.prefix, Sealer: sealer}
		st, err := pgstore.New(pool, opts)
		if err != nil {
			pool.Close()
			return nil, usageError{err.Error()}
		}
		o.Lister, o.close = st, pool.Close
	}
	return o, nil
}

// quietRedis is a go-redis logger that logs nothing.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// path says where account's token is: its file, or the account in the
// store.
func (o *opened) path(account string) string {
	if o.file != nil {
		return o.file.Path(account)
	}
	return o.where + " (account " + shellWord(account) + ")"
}

// savedAt is when account's record was last written, if the store says
// (a token directory does).
func (o *opened) savedAt(account string) time.Time {
	if o.file == nil {
		return time.Time{}
	}
	t, _ := o.file.SavedAt(account)
	return t
}

// inspector is the store as a SealInspector, which keys and reseal need.
func (o *opened) inspector() (dropboxsign.SealInspector, error) {
	si, ok := o.Lister.(dropboxsign.SealInspector)
	if !ok {
		return nil, fmt.Errorf("the store %s cannot tell how its tokens are sealed (it is no dropboxsign.SealInspector)", o.where)
	}
	return si, nil
}

// The secrets that must never reach the output: the store's password and
// the keys, as given. Every byte the commands write goes through
// redactingWriter: a belt to the braces of never formatting them.
var (
	secretsMu sync.Mutex
	secrets   []string
)

func addSecret(v string) {
	if len(v) < 4 { // too short to replace without mangling words
		return
	}
	secretsMu.Lock()
	defer secretsMu.Unlock()
	secrets = append(secrets, v)
	if esc := url.QueryEscape(v); esc != v {
		secrets = append(secrets, esc)
	}
	if esc := url.PathEscape(v); esc != v {
		secrets = append(secrets, esc)
	}
}

// noteSecret records u's password, if any, as a secret, and the user name
// too when userIsPassword: Redis's AUTH takes redis://PASSWORD@HOST's
// user name as written by one who meant a password (there is no user).
func noteSecret(u *url.URL, userIsPassword bool) {
	if p, ok := u.User.Password(); ok {
		addSecret(p)
	} else if userIsPassword && u.User != nil {
		addSecret(u.User.Username())
	}
	for name, values := range u.Query() {
		if strings.Contains(strings.ToLower(name), "pass") {
			for _, v := range values {
				addSecret(v)
			}
		}
	}
}

// redactingWriter writes to w with every secret replaced by "xxxxx".
type redactingWriter struct{ w io.Writer }

func (r redactingWriter) Write(p []byte) (int, error) {
	secretsMu.Lock()
	list := secrets
	secretsMu.Unlock()
	s := string(p)
	changed := false
	for _, v := range list {
		if strings.Contains(s, v) {
			s, changed = strings.ReplaceAll(s, v, "xxxxx"), true
		}
	}
	if !changed {
		return r.w.Write(p)
	}
	if _, err := io.WriteString(r.w, s); err != nil {
		return 0, err
	}
	return len(p), nil
}
