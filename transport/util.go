package transport

import (
	"encoding/json"
	"fmt"
	"time"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func mbps(bytes int64, d time.Duration) string {
	s := d.Seconds()
	if s <= 0 {
		s = 1e-9
	}
	return fmt.Sprintf("%.1f", float64(bytes)/s/1e6)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
