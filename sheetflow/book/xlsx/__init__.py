"""The local .xlsx/.xlsm backend: :class:`XlsxBook` reads with python-calamine and writes by patching the zip
package instead of re-saving the workbook.

Why not openpyxl load + save: it silently drops form buttons, ActiveX controls, embedded objects, x14 data
validations and conditional formats, threaded comments and shapes (31 of the 67 real workbooks in the test
corpus lose something). sheetflow only puts values into a few sheets, so the writer rewrites exactly the
worksheet parts it writes and the parts of the sheets it adds, plus the minimum of bookkeeping
(``workbook.xml``, its rels, ``[Content_Types].xml``, ``styles.xml``, ``calcChain.xml``, grown tables),
and copies every other zip entry unchanged.

Why one package ``book/xlsx/`` and not ``book/xlsxpatch/``: a backend is one place, like ``book/excel.py``
and ``book/gsheets.py``; the reader and the writer of the file format change together, and
``from sheetflow.book.xlsx import XlsxBook`` stays as it was. The modules, bottom up, each importing only
the ones above it in this list:

* :mod:`.refs` - A1 references, grid limits, serial dates;
* :mod:`.xmlparts` - namespaces, parser, a parsed part;
* :mod:`.cells` - what a value becomes in the XML;
* :mod:`.rawrows` - big sheets' rows changed as bytes;
* :mod:`.zipio` - zip entries copied as bytes or compressed in the background;
* :mod:`.rowdelete` - Excel's "Delete row";
* :mod:`.package` - parts, relationships, content types, calcChain;
* :mod:`.workbook` - workbook.xml: sheets, names, protection, new sheets;
* :mod:`.styles` - date formats and bold headers;
* :mod:`.tables` - Excel tables that grow;
* :mod:`.sheet` - the worksheet writer;
* :mod:`.apply` - :func:`patch_workbook`, the orchestration;
* :mod:`.book` - :class:`XlsxBook`, the :class:`~sheetflow.book.base.Book` of a local file.

Names without a leading underscore are used by other modules (of this package, or the other backends that
share the writer's rules); underscored names stay inside their module. What a batch is
(:class:`~sheetflow.book.patch.SheetPatch`) lives in :mod:`sheetflow.book.patch`, shared by every backend.
"""

from sheetflow.book.xlsx.apply import SheetLayout, date1904, patch_workbook, sheet_layouts
from sheetflow.book.xlsx.book import XlsxBook

__all__ = ["SheetLayout", "XlsxBook", "date1904", "patch_workbook", "sheet_layouts"]
