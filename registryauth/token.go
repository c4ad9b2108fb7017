package registryauth

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are a registry token's claims: the registered ones and the
// `access` list (https://distribution.github.io/distribution/spec/auth/jwt/).
// Times are whole seconds: Distribution reads exp, nbf and iat as integers.
type Claims struct {
	jwt.RegisteredClaims
	Access []Access `json:"access"`
}

// ClockSkew backdates a token's iat and nbf: zot checks both with no
// leeway, so a registry whose clock is a little behind the service's
// would refuse a token "used before issued".
const ClockSkew = 30 * time.Second

// Mint signs a token for subject with the given access, valid for ttl from
// now (minus ClockSkew at the start). The header carries `kid` (how
// Distribution picks the key among its bundle; zot uses its single key).
func Mint(k *Key, issuer, service, subject string, access []Access, now time.Time, ttl time.Duration) (string, error) {
	if access == nil {
		access = []Access{}
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", err
	}
	c := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			Subject:   subject,
			Audience:  jwt.ClaimStrings{service},
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			NotBefore: jwt.NewNumericDate(now.Add(-ClockSkew)),
			IssuedAt:  jwt.NewNumericDate(now.Add(-ClockSkew)),
			ID:        hex.EncodeToString(id[:]),
		},
		Access: access,
	}
	t := jwt.NewWithClaims(k.Method, c)
	t.Header["kid"] = k.KID
	return t.SignedString(k.Signer)
}
