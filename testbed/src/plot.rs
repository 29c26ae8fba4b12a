//! Line charts as SVG text, for the experiment reports in
//! `docs/experiments.md`: one x axis (what the experiment varied), one y
//! axis, a polyline with markers per series, a legend.
//!
//! Drawn with `plotters` and only its SVG backend: text is written as SVG
//! `<text>` for the reader's renderer to lay out, so no font files or
//! rasterizer are needed on the machine that runs the experiment.

use plotters::prelude::*;

use crate::error::{Error, Result};

/// One named series of (x, y) points, drawn in the order given.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: &str, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.to_owned(),
            points,
        }
    }
}

/// What a chart shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

/// Colours of successive series: distinguishable, and legible in print.
const PALETTE: [RGBColor; 5] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
];

const SIZE: (u32, u32) = (720, 420);

impl Chart {
    /// The chart as an SVG document. The axes start at 0 and reach 5 %
    /// past the largest value, so charts of one experiment compare by eye.
    pub fn to_svg(&self) -> Result<String> {
        let points = || self.series.iter().flat_map(|s| s.points.iter());
        if points().any(|(x, y)| !x.is_finite() || !y.is_finite()) {
            return Err(Error::Usage(format!(
                "chart {:?}: every point must be a finite number",
                self.title
            )));
        }
        let top = |f: fn(&(f64, f64)) -> f64| {
            let max = points().map(f).fold(0.0_f64, f64::max);
            if max > 0.0 {
                max * 1.05
            } else {
                1.0
            }
        };
        let (x_max, y_max) = (top(|p| p.0), top(|p| p.1));
        let mut svg = String::new();
        let drawn = (|| -> std::result::Result<(), Box<dyn std::error::Error + '_>> {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(&self.title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
            chart
                .configure_mesh()
                .x_desc(&self.x_label)
                .y_desc(&self.y_label)
                .draw()?;
            for (i, s) in self.series.iter().enumerate() {
                let colour = PALETTE[i % PALETTE.len()];
                chart
                    .draw_series(LineSeries::new(
                        s.points.iter().copied(),
                        colour.stroke_width(2),
                    ))?
                    .label(&s.name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                    });
                chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .draw()?;
            root.present()?;
            Ok(())
        })();
        drawn.map_err(|e| Error::Usage(format!("chart {:?}: {e}", self.title)))?;
        Ok(svg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart() -> Chart {
        Chart {
            title: "Ping RTT across the WAN".into(),
            x_label: "one-way WAN delay (ms)".into(),
            y_label: "RTT (ms)".into(),
            series: vec![
                Series::new("Iris", vec![(0.0, 1.6), (10.0, 21.7), (100.0, 201.9)]),
                Series::new(
                    "plain bridge",
                    vec![(0.0, 0.6), (10.0, 20.6), (100.0, 200.7)],
                ),
            ],
        }
    }

    #[test]
    fn a_chart_is_an_svg_document_with_every_series_and_label() {
        let svg = chart().to_svg().unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for text in [
            "Ping RTT across the WAN",
            "one-way WAN delay (ms)",
            "RTT (ms)",
            "Iris",
            "plain bridge",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        // Per series, its line and its legend sample in its colour, and a
        // marker per point.
        for colour in ["#1F77B4", "#D62728"] {
            let lines = svg
                .lines()
                .filter(|l| l.starts_with("<polyline") && l.contains(colour))
                .count();
            assert_eq!(lines, 2, "{colour}");
        }
        assert_eq!(svg.matches("<circle").count(), 6);
    }

    #[test]
    fn a_point_that_is_not_a_number_is_refused() {
        let mut c = chart();
        c.series[0].points.push((5.0, f64::NAN));
        let e = c.to_svg().unwrap_err().to_string();
        assert!(e.contains("finite"), "{e}");
    }

    #[test]
    fn an_empty_chart_still_draws_its_axes() {
        let c = Chart {
            series: Vec::new(),
            ..chart()
        };
        assert!(c.to_svg().unwrap().contains("RTT (ms)"));
    }
}
