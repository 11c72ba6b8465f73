"""A small live line plot for training curves, drawn with QPainter (no plotting library needed)."""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

__all__ = ["CurvePlot"]

_MARGIN = 6
_TEXT = 14


class CurvePlot(QWidget):
    """Series of ``(x, y)`` points drawn as lines in one box, each scaled to its own range.

    The title line shows each series' name, in its colour, with its latest value; the box spans the x range of
    all points. Non-finite values are skipped.
    """

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.series: dict[str, tuple[QColor, list[tuple[float, float]]]] = {}
        self.setMinimumHeight(90)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def add_series(self, name: str, color: str) -> None:
        """Declare a series (its colour); points are added with :meth:`add_point`."""
        self.series[name] = (QColor(color), [])

    def add_point(self, name: str, x: float, y: float) -> None:
        """Append a point to a series and redraw."""
        if math.isfinite(x) and math.isfinite(y):
            self.series[name][1].append((float(x), float(y)))
            self.update()

    def clear(self) -> None:
        """Remove all points (keeping the series)."""
        for _, points in self.series.values():
            points.clear()
        self.update()

    def paintEvent(self, event: object) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        box = QRectF(_MARGIN, _MARGIN + _TEXT, self.width() - 2 * _MARGIN, self.height() - 2 * _MARGIN - _TEXT)
        painter.setPen(QPen(QColor(128, 128, 128)))
        painter.drawRect(box)
        painter.drawText(QPointF(_MARGIN, _MARGIN + _TEXT - 3), self.title)
        xs = [x for _, points in self.series.values() for x, _ in points]
        if not xs:
            return
        x_low, x_high = min(xs), max(xs)
        label_x = _MARGIN + painter.fontMetrics().horizontalAdvance(self.title) + 12
        for name, (color, points) in self.series.items():
            if not points:
                continue
            ys = [y for _, y in points]
            y_low, y_high = min(ys), max(ys)
            line = QPolygonF(
                [
                    QPointF(
                        box.left() + box.width() * ((x - x_low) / (x_high - x_low) if x_high > x_low else 0.5),
                        box.bottom() - box.height() * ((y - y_low) / (y_high - y_low) if y_high > y_low else 0.5),
                    )
                    for x, y in points
                ]
            )
            painter.setPen(QPen(color, 1.5))
            if len(points) == 1:
                painter.drawEllipse(line[0], 2.0, 2.0)
            else:
                painter.drawPolyline(line)
            text = f"{name} {ys[-1]:.4g}"
            painter.drawText(QPointF(label_x, _MARGIN + _TEXT - 3), text)
            label_x += painter.fontMetrics().horizontalAdvance(text) + 12
        painter.setPen(QPen(QColor(128, 128, 128)))
        painter.drawText(
            box.adjusted(3, 0, -3, -2), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignBottom, f"{x_high:g}"
        )
