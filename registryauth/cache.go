package registryauth

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"
)

// CachedAuthenticator remembers, for a short time, who a token that the
// API server authenticated belongs to. A push asks for a registry token
// for every repository scope it touches, and every step of every converted
// task presents the same projected token several times: without the cache
// each of those is a TokenReview, and at 100 registry tokens a second the
// webhook's API client (5 requests/s by default) queued them for seconds.
// Only successes are cached (a refused token is asked again, so a fix on
// the cluster side takes effect at once), keyed by the token's SHA-256
// (the token itself is never kept), for TTL: a token revoked (its pod
// deleted) keeps working here for at most that long. The kube-apiserver
// caches token authentications itself (10 s by default).
type CachedAuthenticator struct {
	Next Authenticator
	TTL  time.Duration
	// Max entries; when full, expired ones are dropped, and if none was
	// expired the cache starts over (a burst of distinct tokens costs
	// TokenReviews, never memory).
	Max int
	now func() time.Time

	mu      sync.Mutex
	entries map[[sha256.Size]byte]cached
}

type cached struct {
	id      Identity
	expires time.Time
}

// DefaultReviewCacheTTL is how long a successful TokenReview is reused.
const DefaultReviewCacheTTL = 10 * time.Second

// Review returns the cached identity of token, or asks Next.
func (c *CachedAuthenticator) Review(ctx context.Context, token string) (Identity, error) {
	key := sha256.Sum256([]byte(token))
	now := c.clock()
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.id, nil
	}
	id, err := c.Next.Review(ctx, token)
	if err != nil {
		return id, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[[sha256.Size]byte]cached{}
	}
	if c.Max > 0 && len(c.entries) >= c.Max {
		for k, v := range c.entries {
			if !now.Before(v.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.Max {
			clear(c.entries)
		}
	}
	c.entries[key] = cached{id: id, expires: now.Add(c.TTL)}
	return id, nil
}

func (c *CachedAuthenticator) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}
