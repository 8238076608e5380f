//go:build ignore

// Gen draws sample.jpg, a synthetic studio portrait: a person (hair, face,
// neck, shirt) on a smooth lit backdrop, with sensor-like noise. Run from
// this directory:
//
//	go run gen.go
//
// The output is deterministic for a given Go version.
package main

import (
	"flag"
	"image"
	"image/color"
	"image/jpeg"
	"log"
	"math"
	"math/rand/v2"
	"os"
)

const w, h = 600, 800

// ellipse returns the approximate signed distance in pixels from (x, y) to an
// axis-aligned ellipse: negative inside.
func ellipse(x, y, cx, cy, rx, ry float64) float64 {
	n := math.Hypot((x-cx)/rx, (y-cy)/ry)
	return (n - 1) * math.Min(rx, ry)
}

// cover turns a signed distance into coverage with a one-pixel soft edge.
func cover(d float64) float64 { return math.Min(1, math.Max(0, 0.5-d)) }

type rgb struct{ r, g, b float64 }

func mix(a, b rgb, t float64) rgb {
	return rgb{a.r + (b.r-a.r)*t, a.g + (b.g-a.g)*t, a.b + (b.b-a.b)*t}
}

func scale(c rgb, k float64) rgb { return rgb{c.r * k, c.g * k, c.b * k} }

func main() {
	out := flag.String("o", "sample.jpg", "output `file`")
	quality := flag.Int("q", 95, "JPEG quality")
	noise := flag.Float64("noise", 5, "noise standard deviation per channel")
	flag.Parse()

	rng := rand.New(rand.NewPCG(2024, 11))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	var (
		wallTop = rgb{214, 222, 232}
		wallLow = rgb{160, 172, 188}
		skin    = rgb{228, 176, 142}
		hair    = rgb{58, 38, 28}
		shirt   = rgb{176, 52, 48}
		collar  = rgb{36, 44, 84}
		dark    = rgb{40, 30, 30}
		lips    = rgb{180, 90, 90}
	)
	for y := range h {
		for x := range w {
			fx, fy := float64(x)+0.5, float64(y)+0.5
			// Backdrop: vertical fall-off and a soft spotlight behind the head.
			c := mix(wallTop, wallLow, fy/h)
			spot := math.Exp(-math.Pow(math.Hypot(fx-300, fy-260)/260, 2))
			c = mix(c, rgb{236, 240, 244}, 0.5*spot)

			// Neck, shadowed under the chin, behind the shirt.
			neck := math.Max(math.Abs(fx-300)-46, math.Max(380-fy, fy-700))
			c = mix(c, scale(skin, 0.8+0.1*math.Min(1, (fy-440)/100)), cover(neck))

			// Shirt: shoulders as a wide ellipse running off the bottom
			// edge, open in a V at the neck with a navy trim along it.
			torso := ellipse(fx, fy, 300, 850, 290, 330)
			vee := math.Max(math.Abs(fx-300)-(630-fy)*0.7, 500-fy)
			shade := 0.75 + 0.25*math.Cos((fx-260)/300)
			c = mix(c, scale(shirt, shade), cover(math.Max(torso, -vee)))
			c = mix(c, collar, cover(math.Max(torso, math.Abs(vee+5)-5)))

			// Hair behind the face, then the face, lit from the left.
			c = mix(c, hair, cover(ellipse(fx, fy, 300, 270, 138, 168)))
			face := ellipse(fx, fy, 300, 300, 112, 145)
			light := 1.05 - 0.2*(fx-200)/200
			c = mix(c, scale(skin, light), cover(face))
			// Fringe over the forehead.
			c = mix(c, hair, cover(math.Max(ellipse(fx, fy, 300, 190, 130, 70), face-30)))

			// Eyes, brows and mouth.
			for _, ex := range []float64{255, 345} {
				c = mix(c, dark, cover(ellipse(fx, fy, ex, 300, 16, 8)))
				c = mix(c, hair, cover(ellipse(fx, fy, ex, 274, 26, 5)))
			}
			c = mix(c, lips, cover(ellipse(fx, fy, 300, 388, 32, 9)))
			c = mix(c, scale(skin, 0.85), cover(ellipse(fx, fy, 300, 345, 9, 20)))

			n := func(v float64) uint8 {
				return uint8(math.Min(255, math.Max(0, math.Round(v+rng.NormFloat64()**noise))))
			}
			img.SetRGBA(x, y, color.RGBA{n(c.r), n(c.g), n(c.b), 255})
		}
	}
	f, err := os.Create(*out)
	if err != nil {
		log.Fatal(err)
	}
	if err := jpeg.Encode(f, img, &jpeg.Options{Quality: *quality}); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}
