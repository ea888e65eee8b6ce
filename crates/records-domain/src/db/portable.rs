//! SQL that both engines run: the registry of every statement the stores send (so one test can
//! prepare them all on SQLite and PostgreSQL, since `query!` cannot check queries that go
//! through `Any`), and a builder for queries whose clauses depend on the request.

use std::borrow::Cow;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::error::BoxDynError;
use sqlx::query::{Query, QueryAs};
use sqlx::{Any, Arguments, Encode, FromRow, Type};

use crate::DomainError;

/// One SQL statement of a store, by the name a failing check reports.
#[derive(Debug, Clone)]
pub struct Statement {
    pub name: Cow<'static, str>,
    pub sql: Cow<'static, str>,
}

impl Statement {
    pub fn new(name: impl Into<Cow<'static, str>>, sql: impl Into<Cow<'static, str>>) -> Self {
        Self {
            name: name.into(),
            sql: sql.into(),
        }
    }
}

/// The named `&str` constants of a module as `Statement`s, named `module::CONST`.
#[macro_export]
macro_rules! statements {
    ($module:literal: $($name:ident),+ $(,)?) => {
        vec![$($crate::db::Statement::new(concat!($module, "::", stringify!($name)), $name)),+]
    };
}

/// A query assembled from the clauses that apply, with its values bound in order.
///
/// sqlx's `QueryBuilder<Any>` writes `?` placeholders, which PostgreSQL refuses, and panics when
/// a value cannot be encoded; this one numbers `$1, $2, ...` (SQLite accepts them too) and keeps
/// the first encoding error for the query to return.
pub struct PortableQuery<'q> {
    sql: String,
    arguments: AnyArguments<'q>,
    failed: Option<BoxDynError>,
}

impl<'q> PortableQuery<'q> {
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            arguments: AnyArguments::default(),
            failed: None,
        }
    }

    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Append `sql` followed by the placeholder of `value`.
    pub fn push_bind<T>(&mut self, sql: &str, value: T) -> &mut Self
    where
        T: 'q + Encode<'q, Any> + Type<Any>,
    {
        self.sql.push_str(sql);
        match self.arguments.add(value) {
            Ok(()) => self.sql.push_str(&format!("${}", self.arguments.len())),
            Err(e) => {
                self.failed.get_or_insert(e);
            }
        }
        self
    }

    pub fn sql(&self) -> &str {
        &self.sql
    }

    pub fn build(&mut self) -> Result<Query<'_, Any, AnyArguments<'_>>, DomainError> {
        let arguments = self.take_arguments()?;
        Ok(sqlx::query_with(&self.sql, arguments))
    }

    pub fn build_query_as<T>(
        &mut self,
    ) -> Result<QueryAs<'_, Any, T, AnyArguments<'_>>, DomainError>
    where
        T: for<'r> FromRow<'r, AnyRow>,
    {
        let arguments = self.take_arguments()?;
        Ok(sqlx::query_as_with(&self.sql, arguments))
    }

    /// The text and the values, for a query that must outlive this builder (a stream).
    pub fn into_parts(mut self) -> Result<(String, AnyArguments<'q>), DomainError> {
        let arguments = self.take_arguments()?;
        Ok((self.sql, arguments))
    }

    fn take_arguments(&mut self) -> Result<AnyArguments<'q>, DomainError> {
        match self.failed.take() {
            Some(e) => Err(DomainError::Database(sqlx::Error::Encode(e))),
            None => Ok(std::mem::take(&mut self.arguments)),
        }
    }
}
