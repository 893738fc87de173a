"""The parts' SQLite SQL as PostgreSQL reads it (pipectl/store/postgres.py)."""

from pipectl.store.postgres import redact, translate


def test_placeholders_become_psycopgs_and_percent_signs_are_doubled_literals_included():
    sql = "SELECT ? FROM t WHERE a LIKE 'x%?' AND b = ? AND c % 2 = 0"
    assert translate(sql) == "SELECT %s FROM t WHERE a LIKE 'x%%?' AND b = %s AND c %% 2 = 0"


def test_without_parameters_the_text_is_left_as_written():
    assert translate("SELECT 'a%' FROM t", False) == "SELECT 'a%' FROM t"


def test_sqlite_only_spellings_are_rewritten():
    assert translate("SELECT x FROM t INDEXED BY t_i WHERE y IS NOT ?") == (
        "SELECT x FROM t WHERE y IS DISTINCT FROM %s"
    )
    assert translate("SELECT * FROM temp.batch WHERE ? IS NULL") == (
        "SELECT * FROM pg_temp.batch WHERE CAST(%s AS TEXT) IS NULL"
    )
    assert "json_array_elements_text(%s::json)" in translate("SELECT value FROM json_each(?)")


def test_a_url_is_shown_without_its_password_whatever_its_form():
    assert redact("postgresql://u:p@ss@h:5/db?password=x&sslmode=y") == (
        "postgresql://u:***@h:5/db?password=***&sslmode=y"
    )
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
