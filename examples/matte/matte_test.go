package matte

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

// scene is a synthetic photo with a known foreground.
type scene struct {
	w, h int
	// isFg reports whether (x, y) is foreground; edgeDist is the distance in
	// pixels to the foreground boundary, so scoring can skip the feathered edge.
	isFg     func(x, y int) bool
	edgeDist func(x, y int) float64
	fgColour func(x, y int) color.RGBA
	bgColour func(x, y int) color.RGBA
	noise    float64 // standard deviation per channel
}

func (s scene) render(seed uint64) *image.RGBA {
	rng := rand.New(rand.NewPCG(seed, 7))
	img := image.NewRGBA(image.Rect(0, 0, s.w, s.h))
	for y := range s.h {
		for x := range s.w {
			c := s.bgColour(x, y)
			if s.isFg(x, y) {
				c = s.fgColour(x, y)
			}
			n := func(v uint8) uint8 {
				return uint8(min(255, max(0, math.Round(float64(v)+rng.NormFloat64()*s.noise))))
			}
			img.SetRGBA(x, y, color.RGBA{n(c.R), n(c.G), n(c.B), 255})
		}
	}
	return img
}

func flat(c color.RGBA) func(x, y int) color.RGBA { return func(int, int) color.RGBA { return c } }

// disc builds a scene of one disc of radius r centred at (cx, cy).
func disc(w, h int, cx, cy, r float64) scene {
	d := func(x, y int) float64 { return math.Hypot(float64(x)+0.5-cx, float64(y)+0.5-cy) }
	return scene{
		w: w, h: h,
		isFg:     func(x, y int) bool { return d(x, y) <= r },
		edgeDist: func(x, y int) float64 { return math.Abs(d(x, y) - r) },
	}
}

var (
	red       = color.RGBA{200, 30, 30, 255}
	greyGreen = color.RGBA{120, 140, 110, 255}
	blue      = color.RGBA{33, 150, 242, 255}
)

func matteScenes() []struct {
	name  string
	scene scene
	jpeg  bool
} {
	noisyDisc := disc(400, 300, 200, 150, 80)
	noisyDisc.fgColour, noisyDisc.bgColour, noisyDisc.noise = flat(red), flat(greyGreen), 10

	gradient := disc(320, 240, 150, 130, 70)
	gradient.fgColour = func(x, y int) color.RGBA { return color.RGBA{uint8(150 + x/4), 60, uint8(40 + y/3), 255} }
	gradient.bgColour = func(x, y int) color.RGBA {
		v := uint8(230 - y/3)
		return color.RGBA{v, v, uint8(min(255, int(v)+20)), 255}
	}
	gradient.noise = 4

	// A red ring whose hole has the background's colour but is enclosed by
	// the subject, so it must stay.
	ring := disc(300, 300, 150, 150, 100)
	inHole := func(x, y int) bool { return math.Hypot(float64(x)+0.5-150, float64(y)+0.5-150) <= 40 }
	ring.fgColour = func(x, y int) color.RGBA {
		if inHole(x, y) {
			return greyGreen
		}
		return red
	}
	ring.bgColour, ring.noise = flat(greyGreen), 6

	// A torso cut off by the bottom edge, as in a portrait.
	torso := scene{
		w: 300, h: 300,
		isFg: func(x, y int) bool { return x >= 60 && x < 240 && y >= 120 },
		edgeDist: func(x, y int) float64 {
			return math.Min(math.Min(math.Abs(float64(x)-60), math.Abs(float64(x)-239)), math.Abs(float64(y)-120))
		},
		fgColour: flat(color.RGBA{40, 60, 160, 255}),
		bgColour: flat(color.RGBA{225, 220, 205, 255}),
		noise:    5,
	}

	jpegDisc := noisyDisc
	jpegDisc.noise = 3

	return []struct {
		name  string
		scene scene
		jpeg  bool
	}{
		{"red disc on noisy grey-green", noisyDisc, false},
		{"gradient subject on gradient wall", gradient, false},
		{"ring with background-coloured hole", ring, false},
		{"torso cut off by the bottom edge", torso, false},
		{"red disc through jpeg", jpegDisc, true},
	}
}

func TestMatteAccuracy(t *testing.T) {
	for _, tc := range matteScenes() {
		t.Run(tc.name, func(t *testing.T) {
			var src image.Image = tc.scene.render(1)
			if tc.jpeg {
				var buf bytes.Buffer
				if err := jpeg.Encode(&buf, src, &jpeg.Options{Quality: 90}); err != nil {
					t.Fatal(err)
				}
				var err error
				if src, err = jpeg.Decode(&buf); err != nil {
					t.Fatal(err)
				}
			}
			in := toRGBA(src)
			out := Matte(src, blue)
			if out.Rect != image.Rect(0, 0, tc.scene.w, tc.scene.h) {
				t.Fatalf("result is %v, want %dx%d", out.Rect, tc.scene.w, tc.scene.h)
			}
			var fgN, fgKept, bgN, bgGone int
			for y := range tc.scene.h {
				for x := range tc.scene.w {
					// The two pixels either side of the boundary are the
					// feathered edge and are not scored.
					if tc.scene.edgeDist(x, y) < 2 {
						continue
					}
					if tc.scene.isFg(x, y) {
						fgN++
						if out.RGBAAt(x, y) == in.RGBAAt(x, y) {
							fgKept++
						}
					} else {
						bgN++
						if out.RGBAAt(x, y) == blue {
							bgGone++
						}
					}
				}
			}
			fgAcc, bgAcc := float64(fgKept)/float64(fgN), float64(bgGone)/float64(bgN)
			t.Logf("foreground kept %.2f%% of %d px, background replaced %.2f%% of %d px", 100*fgAcc, fgN, 100*bgAcc, bgN)
			if fgAcc < 0.98 || bgAcc < 0.98 {
				t.Errorf("foreground kept %.4f, background replaced %.4f; want both >= 0.98", fgAcc, bgAcc)
			}
		})
	}
}

func TestMatteEdgeIsSoft(t *testing.T) {
	s := disc(200, 200, 100, 100, 60)
	s.fgColour, s.bgColour = flat(red), flat(greyGreen)
	alpha := alphaMatte(s.render(1))
	var soft int
	for _, a := range alpha {
		if a > 0 && a < 255 {
			soft++
		}
	}
	// A one-pixel feather on each side of a circle of circumference ~377.
	if soft < 377 || soft > 4*377 {
		t.Errorf("%d pixels have partial alpha; want a feathered edge of 377 to 1508", soft)
	}
}

func TestMatteTinyAndUniformImages(t *testing.T) {
	for _, size := range []image.Rectangle{image.Rect(0, 0, 1, 1), image.Rect(0, 0, 2, 3), image.Rect(5, 5, 9, 6)} {
		src := image.NewRGBA(size)
		for i := range src.Pix {
			src.Pix[i] = 200
		}
		out := Matte(src, blue)
		if out.Rect.Dx() != size.Dx() || out.Rect.Dy() != size.Dy() {
			t.Fatalf("size %v: result is %v", size, out.Rect)
		}
		// A uniform image is all background.
		for i := 0; i < len(out.Pix); i += 4 {
			if got := (color.RGBA{out.Pix[i], out.Pix[i+1], out.Pix[i+2], out.Pix[i+3]}); got != blue {
				t.Fatalf("size %v: pixel %d is %v, want %v", size, i/4, got, blue)
			}
		}
	}
}

func TestComposite(t *testing.T) {
	bg := color.RGBA{0, 100, 200, 255}
	tests := []struct {
		name  string
		src   color.RGBA // premultiplied
		alpha uint8
		want  color.RGBA
	}{
		{"opaque foreground", color.RGBA{10, 20, 30, 255}, 255, color.RGBA{10, 20, 30, 255}},
		{"background", color.RGBA{10, 20, 30, 255}, 0, bg},
		{"half", color.RGBA{200, 200, 200, 255}, 128, color.RGBA{100, 150, 200, 255}},
		{"transparent source", color.RGBA{0, 0, 0, 0}, 255, bg},
		{"half transparent source", color.RGBA{100, 100, 100, 128}, 255, color.RGBA{100, 150, 200, 255}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := image.NewRGBA(image.Rect(0, 0, 1, 1))
			src.SetRGBA(0, 0, tc.src)
			got := composite(src, []uint8{tc.alpha}, bg).RGBAAt(0, 0)
			for c, d := range [3]int{int(got.R) - int(tc.want.R), int(got.G) - int(tc.want.G), int(got.B) - int(tc.want.B)} {
				if d < -1 || d > 1 || got.A != 255 {
					t.Fatalf("got %v, want %v (channel %d off by %d)", got, tc.want, c, d)
				}
			}
		})
	}
}

func TestOtsu(t *testing.T) {
	tests := []struct {
		name   string
		fill   map[int]int
		lo, hi int // inclusive range of acceptable thresholds
	}{
		{"two modes", map[int]int{10: 500, 11: 500, 200: 300, 201: 300}, 11, 199},
		{"single value", map[int]int{42: 10}, 0, 42},
		{"three modes splits the widest gap", map[int]int{5: 1000, 60: 50, 250: 1000}, 60, 249},
		{"empty", nil, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h [256]int
			for v, n := range tc.fill {
				h[v] = n
			}
			if got := otsu(&h); got < tc.lo || got > tc.hi {
				t.Errorf("otsu = %d, want %d to %d", got, tc.lo, tc.hi)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	var h [256]int
	for v := 1; v <= 100; v++ {
		h[v] = 1
	}
	tests := []struct {
		p    float64
		want int
	}{{0, 1}, {0.01, 1}, {0.5, 50}, {0.99, 99}, {1, 100}}
	for _, tc := range tests {
		if got := percentile(&h, tc.p); got != tc.want {
			t.Errorf("percentile(1..100, %v) = %d, want %d", tc.p, got, tc.want)
		}
	}
	if got := percentile(&[256]int{}, 0.5); got != 0 {
		t.Errorf("percentile of nothing = %d, want 0", got)
	}
}

func BenchmarkMatte400x300(b *testing.B) {
	s := disc(400, 300, 200, 150, 80)
	s.fgColour, s.bgColour, s.noise = flat(red), flat(greyGreen), 10
	src := s.render(1)
	b.ReportAllocs()
	for b.Loop() {
		Matte(src, blue)
	}
}

func BenchmarkMatteSample(b *testing.B) {
	data, err := os.ReadFile("../sample/sample.jpg")
	if err != nil {
		b.Fatal(err)
	}
	img, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		Matte(img, blue)
	}
}
