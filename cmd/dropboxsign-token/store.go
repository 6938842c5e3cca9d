package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
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
		noteSecret(u)
		if _, err := redis.ParseURL(v); err != nil {
			return storeSpec{}, usagef("%s %s: %s", origin, u.Redacted(), redisReason(err))
		}
		return storeSpec{kind: redisStore, url: v, where: u.Redacted()}, nil
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
		noteSecret(u)
		if _, err := pgxpool.ParseConfig(v); err != nil {
			// Not pgx's text: it repeats the URL, whose password it hides
			// on a best-effort basis only.
			return storeSpec{}, usagef("%s %s is not a valid PostgreSQL connection URL (a misspelt parameter, a bad port or sslmode?)", origin, u.Redacted())
		}
		return storeSpec{kind: postgresStore, url: v, where: u.Redacted()}, nil
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
	noteSecret(u)
	q := u.Query()
	for _, a := range addrs[1:] {
		q.Add("addr", a)
	}
	u.Path, u.RawQuery = "", q.Encode()
	shown := *u
	if _, ok := shown.User.Password(); ok {
		shown.User = url.UserPassword(shown.User.Username(), "xxxxx")
	}
	shown.Host, shown.RawQuery = strings.Join(addrs, ","), query
	return u.String(), scheme + "+cluster://" + strings.TrimPrefix(shown.String(), scheme+"://"), nil
}

// redactURL hides what looks like a password in a string that did not
// parse as a URL: everything between "://" and the last "@".
func redactURL(v string) string {
	scheme, rest, ok := strings.Cut(v, "://")
	if !ok {
		return v
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		user, _, _ := strings.Cut(rest[:i], ":")
		return scheme + "://" + user + ":xxxxx" + rest[i:]
	}
	return v
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
			return nil, usagef("%s: ID %d of the list, %q, is not a key ID (16 hexadecimal digits, as 'dropboxsign-token keys' prints them)", envRetiredIDs, i+1, printable(id))
		}
		ids = append(ids, id)
	}
	if len(ids) > 0 {
		sealer = sealer.Retired(ids...)
	}
	return sealer, nil
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

// noteSecret records u's password, if any, as a secret.
func noteSecret(u *url.URL) {
	if p, ok := u.User.Password(); ok {
		addSecret(p)
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
