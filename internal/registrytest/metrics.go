package registrytest

import (
	"fmt"
	"io"
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape GETs url (a /metrics) with hc and parses it with the Prometheus
// text parser, for tests and the load generator alike.
func Scrape(hc *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return nil, fmt.Errorf("scrape %s: %s: %s", url, resp.Status, body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	return mfs, nil
}

// Unlabelled returns the counters, gauges and untyped samples of mfs that
// have no labels, by name; labelled series and histograms are left out
// (the server's own tests read those from the families).
func Unlabelled(mfs map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != 0 {
				continue
			}
			switch {
			case m.Counter != nil:
				out[name] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[name] = m.GetGauge().GetValue()
			case m.Untyped != nil:
				out[name] = m.GetUntyped().GetValue()
			}
		}
	}
	return out
}

// Metrics scrapes url with hc and returns its unlabelled samples by name
// (Unlabelled), failing t if the scrape fails.
func Metrics(t testing.TB, hc *http.Client, url string) map[string]float64 {
	t.Helper()
	mfs, err := Scrape(hc, url)
	if err != nil {
		t.Fatal(err)
	}
	return Unlabelled(mfs)
}
