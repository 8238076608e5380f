// Package matte is the examples' model: classical foreground/background
// matting of a photo onto a plain background colour, in pure Go. The
// background is modelled from the image border (k-means), each pixel's
// colour distance to it is thresholded (Otsu, bounded by the border's own
// noise), only what is connected to the border is kept as background, and
// the mask is cleaned up and feathered before compositing.
package matte

import (
	"image"
	"image/color"
	"image/draw"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
)

// Parameters of the background model. The matte assumes a photo whose edges
// show mostly background, as in a portrait or a product shot.
const (
	// borderWidth is how many pixels of each edge are sampled as background.
	borderWidth = 2
	// bgClusters is k for the k-means over border colours: enough for a
	// gradient or two-tone wall, few enough to stay fast.
	bgClusters = 4
	// kmeansIters bounds the Lloyd iterations; border colours converge in a few.
	kmeansIters = 12
	// minSideShare is the share of an edge's pixels a colour cluster must cover,
	// on at least two edges, to count as background. A subject cut off by one
	// edge (shoulders at the bottom of a portrait) covers only that edge.
	minSideShare = 0.2
	// minThreshold is the smallest colour distance that separates foreground
	// from background, so JPEG ringing on a flat wall is not foreground.
	minThreshold = 8
)

// Matte separates the foreground of img from its background and composites
// the foreground onto bg. The result has img's size and origin (0, 0) and is
// opaque. Transparent pixels of img count as background.
func Matte(img image.Image, bg color.RGBA) *image.RGBA {
	src := toRGBA(img)
	return composite(src, alphaMatte(src), bg)
}

// toRGBA returns img as an *image.RGBA, converting only when needed.
func toRGBA(img image.Image) *image.RGBA {
	if m, ok := img.(*image.RGBA); ok {
		return m
	}
	b := img.Bounds()
	m := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(m, m.Bounds(), img, b.Min, draw.Src)
	return m
}

// alphaMatte returns one alpha value per pixel of src, row-major: 255 for
// foreground, 0 for background, in between on a one-pixel feathered edge.
//
// The background is modelled by k-means over the colours of the image border.
// Each pixel's distance to the nearest background colour is thresholded (Otsu,
// clamped to the border's own noise level), and only background-like pixels
// connected to the border become background, so foreground that happens to
// share the background's colour survives when enclosed by the subject.
func alphaMatte(src *image.RGBA) []uint8 {
	w, h := src.Rect.Dx(), src.Rect.Dy()
	if w == 0 || h == 0 {
		return nil
	}
	samples, sides := borderSamples(src)
	model, isBg := backgroundColours(samples, sides)
	centres := make([][3]int32, len(model))
	for i, c := range model {
		centres[i] = toInt(c)
	}

	dist := make([]uint8, w*h)
	var hist [256]int
	for y := range h {
		row := src.Pix[y*src.Stride:]
		for x := range w {
			d := nearest(centres, [3]int32{int32(row[4*x]), int32(row[4*x+1]), int32(row[4*x+2])})
			dist[y*w+x] = d
			hist[d]++
		}
	}
	// How far the border's own background strays from its model (noise,
	// gradients, JPEG ringing) bounds the threshold. Otsu alone would split
	// the widest gap, which for a subject with dark hair and a pale face
	// lies between hair and face, handing the face to the background.
	var spread [256]int
	for i, p := range samples {
		if isBg[i] {
			spread[nearest(centres, toInt(p))]++
		}
	}
	lo := max(minThreshold, 1.25*float64(percentile(&spread, 0.99)))
	t := min(max(float64(otsu(&hist)), lo), 2*lo)

	cand := make([]uint8, w*h)
	for i, d := range dist {
		if float64(d) <= t {
			cand[i] = 1
		}
	}
	fg := floodBackground(cand, w, h)
	for i := range fg {
		fg[i] ^= 1
	}
	// Opening drops isolated noise specks; closing fills one-pixel notches.
	fg = morph(morph(fg, w, h, false), w, h, true)
	fg = morph(morph(fg, w, h, true), w, h, false)
	return feather(fg, w, h)
}

// rgb is a colour with float channels for clustering.
type rgb [3]float32

func pixel(row []uint8, x int) rgb {
	return rgb{float32(row[4*x]), float32(row[4*x+1]), float32(row[4*x+2])}
}

func sqDist(a, b rgb) float32 {
	dr, dg, db := a[0]-b[0], a[1]-b[1], a[2]-b[2]
	return dr*dr + dg*dg + db*db
}

// isqrt[d2] is round(sqrt(d2)) for squared distances below 255².
var isqrt = sync.OnceValue(func() []uint8 {
	t := make([]uint8, 255*255)
	for i := range t {
		t[i] = uint8(math.Sqrt(float64(i)) + 0.5)
	}
	return t
})

// nearest returns the distance from p to the closest centre, capped at 255.
// It works in integers: this runs once per pixel and dominates the matte.
func nearest(centres [][3]int32, p [3]int32) uint8 {
	best := int32(math.MaxInt32)
	for _, c := range centres {
		dr, dg, db := p[0]-c[0], p[1]-c[1], p[2]-c[2]
		best = min(best, dr*dr+dg*dg+db*db)
	}
	if best >= 255*255 {
		return 255
	}
	return isqrt()[best]
}

func toInt(c rgb) [3]int32 {
	return [3]int32{int32(c[0] + 0.5), int32(c[1] + 0.5), int32(c[2] + 0.5)}
}

// borderSamples returns the colours of the pixels within borderWidth of an
// edge and, for each, which edge it belongs to (0 top, 1 bottom, 2 left, 3 right).
func borderSamples(src *image.RGBA) ([]rgb, []uint8) {
	w, h := src.Rect.Dx(), src.Rect.Dy()
	bw := min(borderWidth, (w+1)/2, (h+1)/2)
	var samples []rgb
	var sides []uint8
	for y := range h {
		row := src.Pix[y*src.Stride:]
		for x := range w {
			var side uint8
			switch {
			case y < bw:
				side = 0
			case y >= h-bw:
				side = 1
			case x < bw:
				side = 2
			case x >= w-bw:
				side = 3
			default:
				continue
			}
			samples = append(samples, pixel(row, x))
			sides = append(sides, side)
		}
	}
	return samples, sides
}

// backgroundColours clusters the border colours and keeps the clusters that
// cover at least minSideShare of two or more edges; if none does, it keeps
// the largest cluster. It returns the kept clusters' centres and which
// samples belong to them.
func backgroundColours(samples []rgb, sides []uint8) ([]rgb, []bool) {
	centres, labels := kmeans(samples, bgClusters)
	var total [4]int
	count := make([][4]int, len(centres))
	for i, l := range labels {
		count[l][sides[i]]++
		total[sides[i]]++
	}
	keep := make([]bool, len(centres))
	largest, largestN := 0, -1
	for c := range centres {
		edges, n := 0, 0
		for s := range 4 {
			n += count[c][s]
			if total[s] > 0 && float64(count[c][s]) >= minSideShare*float64(total[s]) {
				edges++
			}
		}
		keep[c] = edges >= 2
		if n > largestN {
			largest, largestN = c, n
		}
	}
	if !slices.Contains(keep, true) {
		keep[largest] = true
	}
	var kept []rgb
	for c := range centres {
		if keep[c] {
			kept = append(kept, centres[c])
		}
	}
	isBg := make([]bool, len(samples))
	for i, l := range labels {
		isBg[i] = keep[l]
	}
	return kept, isBg
}

// kmeans clusters pts into at most k groups, seeded by k-means++ from a fixed
// random source so the same image always gives the same matte.
func kmeans(pts []rgb, k int) ([]rgb, []int) {
	k = min(k, len(pts))
	rng := rand.New(rand.NewPCG(1, 2))
	centres := []rgb{pts[rng.IntN(len(pts))]}
	d2 := make([]float32, len(pts))
	for len(centres) < k {
		var sum float64
		for i, p := range pts {
			d2[i] = float32(math.MaxFloat32)
			for _, c := range centres {
				d2[i] = min(d2[i], sqDist(p, c))
			}
			sum += float64(d2[i])
		}
		if sum == 0 {
			break // fewer distinct colours than k
		}
		r, next := rng.Float64()*sum, len(pts)-1
		for i := range pts {
			if r -= float64(d2[i]); r <= 0 {
				next = i
				break
			}
		}
		centres = append(centres, pts[next])
	}

	labels := make([]int, len(pts))
	for iter := range kmeansIters {
		changed := false
		for i, p := range pts {
			best, bestD := 0, float32(math.MaxFloat32)
			for c := range centres {
				if d := sqDist(p, centres[c]); d < bestD {
					best, bestD = c, d
				}
			}
			if labels[i] != best || iter == 0 {
				labels[i], changed = best, true
			}
		}
		if !changed {
			break
		}
		sums := make([][4]float64, len(centres))
		for i, p := range pts {
			s := &sums[labels[i]]
			s[0], s[1], s[2], s[3] = s[0]+float64(p[0]), s[1]+float64(p[1]), s[2]+float64(p[2]), s[3]+1
		}
		for c, s := range sums {
			if s[3] > 0 {
				centres[c] = rgb{float32(s[0] / s[3]), float32(s[1] / s[3]), float32(s[2] / s[3])}
			}
		}
	}
	return centres, labels
}

// otsu returns the threshold t that best splits hist into values <= t and > t
// by maximising the between-class variance.
func otsu(hist *[256]int) int {
	var total int
	var sum float64
	for v, n := range hist {
		total += n
		sum += float64(v * n)
	}
	var wB int
	var sumB, best float64
	t := 0
	for v, n := range hist {
		wB += n
		if wB == 0 {
			continue
		}
		wF := total - wB
		if wF == 0 {
			break
		}
		sumB += float64(v * n)
		mB, mF := sumB/float64(wB), (sum-sumB)/float64(wF)
		if between := float64(wB) * float64(wF) * (mB - mF) * (mB - mF); between > best {
			best, t = between, v
		}
	}
	return t
}

// percentile returns the smallest value v such that at least fraction p of
// the values counted in hist are <= v, or 0 if hist is empty.
func percentile(hist *[256]int, p float64) int {
	var total int
	for _, n := range hist {
		total += n
	}
	seen := 0
	for v, n := range hist {
		if seen += n; n > 0 && float64(seen) >= p*float64(total) {
			return v
		}
	}
	return 0
}
