// Package kmsseal seals the token stores' tokens with envelope encryption:
// a key-encryption key (KEK) that never leaves a KMS (AWS KMS, Google
// Cloud KMS, Azure Key Vault, HashiCorp Vault's transit engine, through
// gocloud.dev/secrets) wraps the data keys that seal the tokens.
//
// # The model
//
// A data key is 32 random bytes, the AES-256 key of a
// [dropboxsign.Sealer]. The operator keeps it only wrapped by the KEK
// ([NewDataKey], or [Wrap] for a key already in use): the wrapped form can
// sit in plain configuration (an environment variable, a secret manager),
// since it is useless without the KMS. At start-up, [NewSealer] unwraps
// each wrapped key with one Decrypt at the KMS, and returns
// dropboxsign.NewSealer of the data keys: the first seals, every one
// opens, and each sealed token names its data key by [dropboxsign.KeyID]
// ([DataKeyID] tells it for a wrapped key, so that a census line can be
// matched to the configuration).
//
// # The costs
//
// One KMS call per wrapped data key per process start, and none after:
// the data keys are held in memory by the Sealer, so a token's seal and
// open, a refresh's save, a census and a re-seal make no KMS call. A KMS
// that is down at start-up is an error the app sees at once, from
// NewSealer ([Error.Class]: Temporary; a KMS that refuses — a wrong key,
// a missing permission, a key disabled — is Misconfigured); a KMS that
// goes down while the process runs costs nothing until the next start.
// The price of that: the process's memory holds the data keys, as it
// would without a KMS.
//
// # Rotations
//
// Rotating the KEK (the KMS key): [Rewrap] each wrapped data key from the
// old KEK to the new, and replace it in configuration. The data keys do
// not change (same key IDs), so no token is sealed again. A KMS that
// rotates key versions under one key name (AWS KMS's automatic rotation,
// Google Cloud KMS's primary version, Vault's transit rotate) decrypts
// what the older versions wrapped as long as those stay enabled; Rewrap
// re-encrypts under the newest before an old version is disabled.
//
// Rotating a data key is dropboxsign's key rotation, with wrapped keys:
// [NewDataKey], deploy [old, new] one replica at a time (every replica
// learns to open what new will seal), then [new, old] (new seals), run
// [dropboxsign.Reseal] over the store, and remove the old wrapped key once
// [dropboxsign.Census] counts no token under it (docs/replicas.md, "Rotating
// a key").
//
// # Drivers
//
// This module depends on gocloud.dev/secrets only. The app imports its
// KMS's driver for its side effect and opens the KEK by URL with
// secrets.OpenKeeper:
//
//	import _ "gocloud.dev/secrets/awskms"         // awskms:///arn:aws:kms:REGION:ACCOUNT:key/KEY-ID (or awskms://alias/NAME?region=REGION)
//	import _ "gocloud.dev/secrets/gcpkms"         // gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K
//	import _ "gocloud.dev/secrets/azurekeyvault"  // azurekeyvault://VAULT.vault.azure.net/keys/NAME/VERSION
//	import _ "gocloud.dev/secrets/hashivault"     // hashivault://KEY-NAME (VAULT_ADDR and VAULT_TOKEN from the environment)
//	import _ "gocloud.dev/secrets/localsecrets"   // base64key://BASE64-32-BYTES: tests and local development only
//
// The caller of [NewSealer] needs Decrypt on the KEK; whoever makes,
// wraps or rewraps data keys needs Encrypt. docs/kms.md in the repository
// has the set-up for each KMS, the adoption of a KMS by a fleet that seals
// with raw keys, and both rotations step by step.
package kmsseal
