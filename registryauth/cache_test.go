package registryauth

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type countingAuth struct {
	calls int
	ids   map[string]Identity
}

func (a *countingAuth) Review(_ context.Context, token string) (Identity, error) {
	a.calls++
	if id, ok := a.ids[token]; ok {
		return id, nil
	}
	return Identity{}, ErrUnauthenticated
}

func TestCachedAuthenticator(t *testing.T) {
	next := &countingAuth{ids: map[string]Identity{"a": {Namespace: "team-a", Name: "default"}, "b": {Namespace: "team-b", Name: "default"}}}
	now := time.Unix(1000, 0)
	c := &CachedAuthenticator{Next: next, TTL: 30 * time.Second, Max: 2, now: func() time.Time { return now }}
	ctx := context.Background()

	for range 5 {
		id, err := c.Review(ctx, "a")
		require.NoError(t, err)
		require.Equal(t, "team-a", id.Namespace)
	}
	require.Equal(t, 1, next.calls, "one TokenReview for five requests")

	// refusals are not cached: every attempt asks again
	for range 3 {
		_, err := c.Review(ctx, "forged")
		require.True(t, errors.Is(err, ErrUnauthenticated))
	}
	require.Equal(t, 4, next.calls)

	// a token's identity is its own, never another's
	id, err := c.Review(ctx, "b")
	require.NoError(t, err)
	require.Equal(t, "team-b", id.Namespace)
	require.Equal(t, 5, next.calls)

	// after the TTL the API server is asked again
	now = now.Add(31 * time.Second)
	_, err = c.Review(ctx, "a")
	require.NoError(t, err)
	require.Equal(t, 6, next.calls)

	// bounded: a third token with two live entries starts the cache over
	next.ids["c"] = Identity{Namespace: "team-c", Name: "default"}
	_, err = c.Review(ctx, "b") // live again
	require.NoError(t, err)
	_, err = c.Review(ctx, "c")
	require.NoError(t, err)
	require.LessOrEqual(t, len(c.entries), 2)
}
