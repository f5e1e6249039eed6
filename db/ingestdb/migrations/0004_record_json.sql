-- A revision's record is written once and only ever read back whole: json keeps the text
-- as given (after a syntax check), where jsonb parsed it into a tree nothing queries.
alter table advisory_revisions alter column record type json using record::json;
alter table advisory_revisions alter column record set compression lz4;
